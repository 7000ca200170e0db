"""The files under a target root as the safety checks read them: regular files only, links
resolved inside the root and never out of it, the dpkg database as a set of package names."""

from __future__ import annotations

import os
import posixpath

from .errors import KvmbridgeError
from .formats import interfaces as interfaces_format
from .root import Root


def read_dpkg_status(root: Root) -> set[str] | None:
    """Installed package names, or None when the root has no dpkg database (a staging folder)."""
    status = root.read("/var/lib/dpkg/status")
    if status.kind != "file" or status.data is None:
        return None
    installed: set[str] = set()
    for paragraph in status.data.decode("utf-8", "replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in paragraph.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            installed.add(fields["Package"])
    return installed


def root_files(root: Root, pattern: str) -> list[tuple[str, bytes]]:
    """(path, bytes) of every regular file matching `pattern`; links and folders are not read."""
    found = []
    for dest in root.glob(pattern):
        on_disk = root.read(dest)
        if on_disk.kind == "file" and on_disk.data is not None:
            found.append((dest, on_disk.data))
    return found


class RootFiles:
    """ifupdown's view of the files under a root: links resolved inside the root, never out of it."""

    def __init__(self, root: Root) -> None:
        self.root = root

    def read(self, path: str) -> bytes | None:
        # ifupdown opens `interfaces.d/../extra` as the kernel resolves it; Root refuses `..`,
        # and with no link on the way (Root refuses those) the lexical form is the same file.
        path = posixpath.normpath(path)
        for _ in range(16):
            try:
                on_disk = self.root.read(path)
            except KvmbridgeError as exc:
                raise interfaces_format.InterfacesError(path, 0, str(exc)) from None
            if on_disk.kind == "symlink" and on_disk.link is not None:
                path = posixpath.normpath(posixpath.join(posixpath.dirname(path), on_disk.link))
                continue
            if on_disk.kind == "missing" or (on_disk.kind == "other" and self.root.kind(path) == "dir"):
                return None  # for a folder ifupdown says "Is a directory" and reads on without it
            if on_disk.kind != "file" or on_disk.data is None:
                raise interfaces_format.InterfacesError(path, 0, "not a regular file")
            return on_disk.data
        raise interfaces_format.InterfacesError(path, 0, "too many levels of symbolic links")

    def glob(self, pattern: str) -> list[str]:
        if not pattern.startswith("/"):
            return []
        try:
            return self.root.glob(posixpath.normpath(pattern))
        except KvmbridgeError:  # not a safe path pattern: nothing can match it under the root
            return []

    def listdir(self, path: str) -> list[str] | None:
        try:
            folder = self.root.path(posixpath.normpath(path))
        except KvmbridgeError:
            return None
        if folder.is_symlink() or not folder.is_dir():
            return None
        try:
            return os.listdir(folder)
        except OSError:
            return None
