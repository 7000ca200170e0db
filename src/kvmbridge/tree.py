"""Write a rendered set as a plain tree (for `render -o` and golden trees)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError
from .fileset import RenderedSet


def write_tree(files: RenderedSet, output: Path) -> None:
    """Write files with their modes and symlinks; refuse the live root, which is `install`'s job."""
    if output.resolve() == Path("/"):
        raise UsageError(f"{output}: render -o will not write into /; use `kvmbridge install`")
    for f in files:
        dest = output / f.relpath
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            if f.link is not None:
                os.symlink(f.link, dest)
            else:
                assert f.data is not None
                dest.write_bytes(f.data)
                dest.chmod(f.mode)
        except OSError as exc:
            raise UsageError(f"{dest}: cannot write: {exc.strerror}") from None
