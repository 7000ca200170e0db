"""One parser per generated format, each returning a plain normalized structure.

The same parsers serve the semantic diff, the round-trip property tests and
the reading of an existing host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import interfaces, netxml, sysctl, udev

PARSERS: dict[str, Callable[[bytes], Any]] = {
    "interfaces": interfaces.parse,
    "sysctl": sysctl.parse,
    "udev": udev.parse,
    "netxml": netxml.parse,
}
