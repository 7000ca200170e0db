"""A reading of interfaces(5) in the forms it is compared in: `semantic` for the diff and `equivalent`,
`write` (the text again) for the differential tests against ifupdown's own `ifquery`."""

from __future__ import annotations

from typing import Any

from .interfaces import COMMANDS, Interfaces, parse


def semantic(parsed: Interfaces) -> dict[str, Any]:
    """The plain form the semantic diff and `equivalent` compare: what ifupdown would act on.

    Stanzas keep their order; a repeated `name family` gets ` #2`, ` #3`, ... so a
    second stanza can never hide behind the first.
    """
    ifaces: dict[str, Any] = {}
    for stanza in parsed.stanzas:
        key = base = f"{stanza.name} {stanza.family}"
        n = 1
        while key in ifaces:
            n += 1
            key = f"{base} #{n}"
        options: dict[str, Any] = {}
        for option in stanza.options:
            if option.name in COMMANDS:
                options.setdefault(option.name, []).append(option.value)
            else:
                options[option.name] = option.value
        ifaces[key] = {"method": stanza.method, "options": options}
    out: dict[str, Any] = {
        "auto": list(parsed.auto),
        "source": [s.argument for s in parsed.sources if s.kind == "source"],
        "ifaces": ifaces,
    }
    extra: dict[str, Any] = {
        "allow": {k: list(v) for k, v in parsed.allow.items() if k != "auto"},
        "source-directory": [s.argument for s in parsed.sources if s.kind == "source-directory"],
        "mapping": [{"match": list(m.patterns), "script": m.script, "map": list(m.maps)} for m in parsed.mappings],
        "no-auto-down": list(parsed.no_auto_down),
        "no-scripts": list(parsed.no_scripts),
        "rename": list(parsed.renames),
    }
    out |= {k: v for k, v in extra.items() if v}
    return out


def parse_semantic(data: bytes) -> dict[str, Any]:
    """The registry's parser for `interfaces` destinations."""
    return semantic(parse(data, "interfaces"))


def write(parsed: Interfaces) -> str:
    """The reading written back out: ifupdown reads this text to the same structure.

    Inherited options are written out in full and sources are left out (their
    stanzas are already in `parsed` when it came from `load`).
    """
    out: list[str] = []
    for cls, names in parsed.allow.items():
        if names:
            out.append(f"{'auto' if cls == 'auto' else 'allow-' + cls} {' '.join(names)}")
    for keyword, names in (
        ("no-auto-down", parsed.no_auto_down),
        ("no-scripts", parsed.no_scripts),
        ("rename", parsed.renames),
    ):
        if names:
            out.append(f"{keyword} {' '.join(names)}")
    for mapping in parsed.mappings:
        out.append(" ".join(["mapping", *mapping.patterns]))
        if mapping.script is not None:
            out.append(f"  script {mapping.script}")
        out.extend(f"  map {m}" for m in mapping.maps)
    for stanza in parsed.stanzas:
        out.append(f"iface {stanza.name} {stanza.family} {stanza.method}")
        for option in stanza.options:
            for part in option.value.split("\n"):
                # An option with an empty name (a continuation that began with a space) is written the same way.
                out.append(f"  {option.name} {part}" if option.name else f"\\\n {part}")
    # A trailing backslash would continue the line; a space after it stops that and is stripped again.
    return "".join(f"{line} \n" if line.endswith("\\") else f"{line}\n" for line in out)
