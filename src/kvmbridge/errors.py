"""Typed errors and the exit codes of the product contract.

Every error a user can cause is one of these; `cli` turns it into lines on
stderr and an exit code, so no other module calls `sys.exit` or prints.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_INVALID = 2
EXIT_REFUSED = 3
EXIT_ROLLED_BACK = 4
EXIT_ROLLBACK_FAILED = 5


def one_line(text: str) -> str:
    """`text` as one printable line: a hostile name (a newline, an escape sequence) is shown escaped,
    as `repr` writes it, so it can never add a line of its own to what the user reads."""
    return text if text.isprintable() else repr(text)[1:-1]


class KvmbridgeError(Exception):
    """An error the user can act on; `lines` are printed as they are."""

    exit_code = EXIT_INVALID

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines: tuple[str, ...] = lines

    def __reduce__(self) -> tuple[type[KvmbridgeError], tuple[str, ...]]:
        """Pickled with its lines (a `check` worker process hands errors back to the parent)."""
        return (type(self), self.lines)


class ProfileError(KvmbridgeError):
    """The profile (or another input file) is unreadable or invalid."""

    exit_code = EXIT_INVALID


class UsageError(KvmbridgeError):
    """A command-line value is wrong in a way click cannot see."""

    exit_code = EXIT_INVALID


class RefusedError(KvmbridgeError):
    """A precondition failed before anything was written."""

    exit_code = EXIT_REFUSED


class RolledBackError(KvmbridgeError):
    """A write failed and everything was restored from the backup."""

    exit_code = EXIT_ROLLED_BACK


class RollbackFailedError(KvmbridgeError):
    """A write failed and restoring failed too; the lines name what is left."""

    exit_code = EXIT_ROLLBACK_FAILED
