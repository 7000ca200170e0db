"""Write a rendered set as a plain tree (for `render -o` and golden trees), through a `Root`.

The output folder itself may be a link; nothing below it is ever followed,
so a link planted in the tree cannot send a write elsewhere.
"""

from __future__ import annotations

import errno
import os
from contextlib import ExitStack
from pathlib import Path

from .errors import UsageError
from .fileset import RenderedSet
from .root import Root


def write_tree(files: RenderedSet, output: Path, *, output_may_be_link: bool = True) -> None:
    """Write files with their modes and symlinks; refuse the live root, which is `install`'s job.

    Each folder is walked (without following links) and opened once, and every file
    of it written from that descriptor. A tree is a review artefact, not a host's
    configuration: no fsync per file, one per folder at the end.
    """
    try:
        real = output.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop is a RuntimeError in pathlib
        raise UsageError(f"{output}: cannot follow this path ({exc}); nothing was written") from None
    if real == Path("/"):
        raise UsageError(f"{output}: render -o will not write into /; use `kvmbridge install`")
    root = Root(output, prefix_may_be_link=output_may_be_link)
    with ExitStack() as opened:
        folders: dict[str, int] = {}
        for f in files:
            folder = os.path.dirname(f.path)
            try:
                if folder not in folders:
                    folders[folder] = opened.enter_context(root.opened_folder(folder))
                dirfd = folders[folder]
                if f.link is not None:
                    root.write_symlink_at(f.path, dirfd, f.link, sync=False)
                else:
                    assert f.data is not None
                    root.write_file_at(f.path, dirfd, f.data, f.mode, sync=False)
            except OSError as exc:
                strerror = "is a folder" if exc.errno == errno.EISDIR else exc.strerror
                raise UsageError(f"{exc.filename or root.path(f.path)}: cannot write: {strerror}") from None
        for folder, dirfd in folders.items():
            try:
                os.fsync(dirfd)
            except OSError as exc:
                raise UsageError(f"{root.path(folder)}: cannot write: {exc.strerror}") from None
