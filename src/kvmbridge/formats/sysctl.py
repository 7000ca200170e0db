"""Parse sysctl.d(5) files: key → value, as systemd-sysctl reads them."""

from __future__ import annotations


def parse(data: bytes) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip().lstrip("-").replace("/", ".")
        values[key] = value.strip()
    return values
