"""What every command shares: its options, the one error handler, and how lines and findings are printed.

Part of the command line (with `cli` and `cli_guard`): the only modules that print or pick an exit code.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from . import interrupts
from .errors import EXIT_OK, KvmbridgeError

F = TypeVar("F", bound=Callable[..., Any])


profile_argument = click.argument("profile", type=click.Path(path_type=Path, dir_okay=True))
templates_option = click.option(
    "--templates",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Folder of templates that override the built-in ones by name.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")


def _die_by(signum: int) -> None:
    """Die by the signal itself, so a shell loop stops and systemd counts a stop as clean (143 would be "failed")."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # only if the signal is blocked


def handle_errors(func: F) -> F:
    """Turn our typed errors into lines on stderr and the contract's exit code.

    An interruption outside a transaction ends by its signal once cleaned up: never one of the
    contract's verdicts (Ctrl-C used to exit 1, which `check` and `diff` mean as "changes").
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with interrupts.handled():
                try:
                    return func(*args, **kwargs)
                except KvmbridgeError as exc:
                    if os.environ.get("KVMBRIDGE_DEBUG"):
                        raise
                    interrupts.hold()  # the lines that say what happened are never cut short
                    for line in exc.lines:
                        click.echo(line, err=True)
                    sys.exit(exc.exit_code)
                finally:  # a command that reports by its exit code (`check --update`) too
                    for signum in interrupts.late_signals():
                        name = signal.Signals(signum).name
                        click.echo(f"kvmbridge: {name} arrived once the work was done: it stands as reported", err=True)
        except interrupts.Stopped as exc:
            click.echo(f"kvmbridge: interrupted by {signal.Signals(exc.signum).name}", err=True)
            for note in getattr(exc, "__notes__", ()):  # what was done before it, where that matters
                click.echo(f"kvmbridge: {note}", err=True)
            _die_by(exc.signum)
        except BrokenPipeError:  # `kvmbridge render x.toml | head`: the reader left, not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_OK)

    return wrapper  # type: ignore[return-value]


def print_json(value: object) -> None:
    import json

    click.echo(json.dumps(value, indent=2, sort_keys=True))


root_option = click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/"),
    show_default=True,
    help="The target system's root folder (a staging tree, a mounted image).",
)
force_option = click.option("--force", is_flag=True, help="Overwrite drifted files and symlinked targets.")


def print_findings(findings: Iterable[Any]) -> None:
    """One line per finding on stderr, profile rules' (KB2xx) and safety checks' alike."""
    for finding in findings:
        click.echo(finding.line(), err=True)


def print_safety(report: Any, notes: bool = True) -> None:
    """Findings go to stderr; notes on skipped checks too, except where a summary line carries them."""
    if report is None:
        return
    print_findings(report.findings)
    for note in report.notes if notes else ():
        click.echo(f"note: {note}", err=True)


def echo_lines(lines: Iterable[str]) -> None:
    """Print lines, colouring the unified-diff ones on a terminal."""
    color = sys.stdout.isatty()
    batch: list[str] = []  # one write per few hundred lines: a fleet check prints 10,000
    for line in lines:
        shown = line
        if color and line.startswith("diff "):
            shown = click.style(line, bold=True)
        elif color and line[:1] in ("+", "-", "@") and not line.startswith(("+++", "---")):
            shown = click.style(line, fg={"+": "green", "-": "red", "@": "cyan"}[line[0]])
        batch.append(shown)
        if len(batch) >= 512:
            click.echo("\n".join(batch))
            batch.clear()
    if batch:
        click.echo("\n".join(batch))
