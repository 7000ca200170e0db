"""Parse ifupdown's interfaces(5) into stanzas and options, the way ifupdown reads them."""

from __future__ import annotations

from typing import Any

Options = dict[str, str | list[str]]

AUTO_WORDS = ("auto", "allow-auto")


def logical_lines(text: str) -> list[str]:
    """Join backslash continuations; drop comments and blank lines (interfaces(5))."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if not pending and raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def parse(data: bytes) -> dict[str, Any]:
    """{"auto": [...], "hotplug": [...], "source": [...], "ifaces": {"br0 inet": {"method", "options"}}}."""
    result: dict[str, Any] = {"auto": [], "hotplug": [], "source": [], "ifaces": {}}
    current: Options | None = None
    for line in logical_lines(data.decode("utf-8", "replace")):
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word in AUTO_WORDS:
            result["auto"].extend(rest.split())
            current = None
        elif word.startswith("allow-"):
            result["hotplug"].extend(rest.split())
            current = None
        elif word in ("source", "source-directory"):
            result["source"].append(rest if word == "source" else f"{rest}/*")
            current = None
        elif word == "iface":
            parts = rest.split()
            name, family, method = [*parts, "", "", ""][:3]
            current = {}
            result["ifaces"][f"{name} {family}"] = {"method": method, "options": current}
        elif word == "mapping":
            current = None
        elif current is not None:
            _add(current, word, " ".join(rest.split()))
    return result


def _add(options: Options, key: str, value: str) -> None:
    key = key.replace("-", "_") if key.startswith("bridge") else key
    if key not in options:
        options[key] = value
        return
    old = options[key]
    options[key] = [*old, value] if isinstance(old, list) else [old, value]
