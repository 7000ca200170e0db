"""Parse udev rules into (key, operator, value) triples per rule, as udev(7) reads them."""

from __future__ import annotations

import re

_PAIR = re.compile(r'\s*([A-Za-z_]+(?:\{[^}]*\})?)\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')

Triple = tuple[str, str, str]


def parse(data: bytes) -> list[list[Triple]]:
    """Each rule as its triples; a line that is not all pairs yields a ("?", "", line) triple."""
    rules: list[list[Triple]] = []
    pending = ""
    for raw in data.decode("utf-8", "replace").splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line = (pending + raw).strip()
        pending = ""
        if not line or line.startswith("#"):
            continue
        rules.append(_pairs(line))
    return rules


def _pairs(line: str) -> list[Triple]:
    triples: list[Triple] = []
    pos = 0
    while pos < len(line):
        found = _PAIR.match(line, pos)
        if found is None:
            triples.append(("?", "", line[pos:]))
            break
        triples.append((found[1], found[2], found[3]))
        pos = found.end()
    return triples
