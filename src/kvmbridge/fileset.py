"""The rendered file set: what a profile puts on disk, as plain values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderedFile:
    """One destination: a regular file (`data`) or a symlink (`link`).

    `path` is absolute on the target system (`/etc/network/interfaces`);
    only `Root` ever joins it under a prefix. `keep_mode`: an existing file
    keeps its mode and owner; False where the mode is part of the contract.
    """

    path: str
    mode: int
    data: bytes | None = None
    link: str | None = None
    keep_mode: bool = True
    format: str = "text"

    @property
    def relpath(self) -> str:
        return self.path.lstrip("/")


RenderedSet = tuple[RenderedFile, ...]
