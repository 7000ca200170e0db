"""Key paths as users write them in TOML: `bridges.br0.ipv4.gateway`."""

from __future__ import annotations

import re

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def keypath(*parts: str | int) -> str:
    """Join parts, quoting keys TOML could not write bare and indexing list items."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE.fullmatch(part) else '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out = f"{out}.{text}" if out else text
    return out
