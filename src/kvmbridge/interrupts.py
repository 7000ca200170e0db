"""What a SIGINT, SIGTERM or SIGHUP does at this moment of a command: the one handler for all three.

Outside a transaction a signal ends the command the way Ctrl-C does (`Stopped`, a BaseException
so no `except OSError` swallows it; children are killed and temporary files removed on the way
out). Inside one (`undoing`) the handler only records it, and `Root` raises `Interrupted` at its
next step (`checkpoint`), which the transaction undoes (exit 4). From then on, while undoing, and
once the work is committed, signals are only held: a second Ctrl-C never cuts an undo short, and
a finished install is never reported as undone nor loses the report that names its backup set
(reviews ATTACK9c, 9d, 9e).

Python runs handlers between any two bytecodes: a handler that raised inside a transaction could
land in an `except` clause or between a change and its record. Steps are where the crash tests
prove every undo path, so that is where a transaction is interrupted.
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

STOP, UNDO, HOLD = "stop", "undo", "hold"


class _State:
    """One command's: what a signal does now, whether the work is committed, what was held."""

    def __init__(self) -> None:
        self.installed = False
        self.reset()

    def reset(self) -> None:
        self.mode = STOP
        self.committed = False
        self.pending: int | None = None
        self.held: list[int] = []


_state = _State()


class Stopped(BaseException):
    """A signal outside a transaction: the command ends by it once `finally` blocks have run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.mode == HOLD:
        _state.held.append(signum)
    elif _state.mode == UNDO:
        if _state.pending is None:  # acted on at the next step (`checkpoint`), never between two bytecodes
            _state.pending = signum
    else:
        raise Stopped(signum)


def checkpoint() -> None:
    """Called by `Root` before each step it takes: a signal received inside a transaction interrupts it here.

    Raising from the handler itself landed anywhere: in an `except` clause before the undo had
    begun (ATTACK9d F2), between a change and its record (F4), before `locked`'s `try` (F5).
    Between two steps is where every undo path is proven (the kill loops stop at each one).
    """
    if _state.mode == UNDO and _state.pending is not None:
        from .root import Interrupted  # loaded by then: only a transaction sets UNDO

        signum, _state.pending = _state.pending, None
        _state.mode = HOLD  # a second signal must not interrupt the undo this one starts
        raise Interrupted(errno.EINTR, f"interrupted by {signal.Signals(signum).name}")


@contextmanager
def _installed() -> Iterator[bool]:
    """Our handler for the three signals (True), unless already ours or off the main thread (False).

    A signal ignored when we started stays ignored: `nohup kvmbridge install` must survive the hang-up.
    """
    if threading.current_thread() is not threading.main_thread() or _state.installed:
        yield False
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(sig, _handler)
    _state.installed = True
    _state.reset()
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _state.installed = False
        _state.reset()


@contextmanager
def handled() -> Iterator[None]:
    """For the length of one command."""
    with _installed():
        yield


@contextmanager
def undoing() -> Iterator[None]:
    """A transaction: a signal interrupts it at the next step until it commits or starts undoing.

    Leaving it uncommitted (refused, failed, undone) goes back to ending the command; once
    committed, signals stay held until the command has said what it did.
    """
    with _installed():
        _state.mode = UNDO
        try:
            yield
        finally:
            if not _state.committed:
                _state.reset()


def hold() -> None:
    """From here on signals wait: an undo has begun, or the work is done (see `commit`)."""
    _state.mode = HOLD


def commit() -> None:
    """The work is done: signals wait until the command has printed what it did."""
    _state.committed = True
    if _state.pending is not None:  # arrived after the last step: noted with the report, never lost
        _state.held.append(_state.pending)
        _state.pending = None
    hold()


def late_signals() -> list[int]:
    """Signals that arrived once the work was committed: the command finishes and says so."""
    return list(dict.fromkeys(_state.held)) if _state.committed else []


@contextmanager
def whole() -> Iterator[None]:
    """A unit of work no signal cuts in half: signals wait for its end, then act as they would have."""
    if _state.mode == HOLD:
        yield
        return
    mode, start = _state.mode, len(_state.held)
    _state.mode = HOLD
    try:
        yield
    finally:
        _state.mode = mode
        waiting = _state.held[start:]
        del _state.held[start:]
    if waiting:
        _handler(waiting[0], None)
