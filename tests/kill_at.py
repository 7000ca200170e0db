"""Run the kvmbridge CLI, sending itself a signal at the Nth change to the tree (KILL_AT=N).

Used by the crash-consistency tests: a real process dies at a real step,
with no chance to clean up (SIGKILL, the default), exactly like a power cut
after that step; KILL_SIGNAL=TERM or INT sends that signal instead, as an
impatient admin or a stopping service manager would.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from kvmbridge.cli import main
from kvmbridge.root import Root

_count = 0
_signal = signal.Signals[f"SIG{os.environ.get('KILL_SIGNAL', 'KILL')}"]


def _die_at_step(self: object, what: str, path: Path) -> None:
    global _count  # noqa: PLW0603 - one counter per process is the point
    _count += 1
    if _count == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), _signal)


Root._mutating = _die_at_step  # type: ignore[method-assign]
main()
