"""Write a rendered set as a plain tree (for `render -o` and golden trees), through a `Root`.

The output folder itself may be a link; nothing below it is ever followed,
so a link planted in the tree cannot send a write elsewhere.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import UsageError
from .fileset import RenderedSet
from .root import Root


def write_tree(files: RenderedSet, output: Path, *, output_may_be_link: bool = True) -> None:
    """Write files with their modes and symlinks; refuse the live root, which is `install`'s job."""
    if output.resolve() == Path("/"):
        raise UsageError(f"{output}: render -o will not write into /; use `kvmbridge install`")
    root = Root(output, prefix_may_be_link=output_may_be_link)
    for f in files:
        try:
            root.makedirs(os.path.dirname(f.path))
            if root.kind(f.path) == "dir":
                raise OSError(errno.EISDIR, "is a folder", str(root.path(f.path)))
            if f.link is not None:
                root.write_symlink(f.path, f.link)
            else:
                assert f.data is not None
                root.write_file(f.path, f.data, f.mode)
        except OSError as exc:
            raise UsageError(f"{exc.filename or root.path(f.path)}: cannot write: {exc.strerror}") from None
