"""Parse udev rules into (key, operator, value) triples per rule, as udev(7) reads them."""

from __future__ import annotations

import re

_PAIR = re.compile(r'\s*([A-Za-z_]+(?:\{[^}]*\})?)\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')

Triple = tuple[str, str, str]


_LINE_END = re.compile(r"\r\n|\r|\n|\0")
_WHITESPACE = " \t\n\r"


def parse(data: bytes) -> list[list[Triple]]:
    """Each rule as its triples; a line that is not all pairs yields a ("?", "", line) triple.

    Lines are joined exactly as systemd's udev_rules_parse_file() does: a line
    whose first non-blank character is `#` is a comment and ends there, even
    when it ends in a backslash, and is skipped even inside a continuation; any
    other line ending in a backslash continues on the next one. A continuation
    still open at the end of the file is kept as an unknown triple (udev drops
    it with an error), so it can never look equivalent to a clean file.
    """
    rules: list[list[Triple]] = []
    pending: str | None = None
    lines = _LINE_END.split(data.decode("utf-8", "replace"))
    if lines and not lines[-1]:
        lines.pop()  # the end of the last line, not an empty line of its own
    for raw in lines:
        line = raw.lstrip(_WHITESPACE)
        if line.startswith("#"):
            continue
        if pending is not None:
            line = pending + line
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = None
        if line.strip(_WHITESPACE):
            rules.append(_pairs(line.strip(_WHITESPACE)))
    if pending is not None:
        rules.append([("?", "", pending)])
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
