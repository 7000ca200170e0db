"""Ask the real ifupdown (ifquery, `ifup --no-act`) what it makes of a file, and compare that
with what it makes of our parser's reading written back out.

Comparing two answers of the same tool means its defaults (the implicit `lo`,
`broadcast +`, derived netmasks) count for nothing: only a difference in what
was read shows. The questions asked cover everything the parser claims to
keep: `ifquery --list` for `auto` and for each `allow-CLASS`, `ifquery NAME`
for options and their values in order, and `ifup -n -v` for each stanza's
family, method and commands (and, with `mappings=True`, the mapping scripts
run with their `map` lines).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kvmbridge.formats.ifupdown_sources import HostFiles
from kvmbridge.formats.interfaces import Interfaces, InterfacesError, load
from kvmbridge.formats.interfaces_semantic import write

IFACE_WORD = re.compile(rb"^[ \t\v\f\r]*iface[ \t\v\f\r]+([^ \t\v\f\r\n]+)", re.M)
ALLOW_WORD = re.compile(rb"(?:^|[ \t])allow-([^ \t\v\f\r\n]+)", re.M)
SEP = "\x1e"


@dataclass(frozen=True)
class Answer:
    stdout: str
    complaints: tuple[str, ...]
    failed: bool
    sourced: tuple[str, ...] = ()


def ask(path: Path, names: list[str], classes: list[str], mappings: bool) -> Answer:
    """One shell per file: every question, separated, in a fresh state folder."""
    state = tempfile.mkdtemp(prefix="kvmbridge-ifstate-")
    f = shlex.quote(str(path))
    quoted = " ".join(shlex.quote(n) for n in names)
    lines = [
        f"echo {SEP}list; ifquery -v -i {f} --list; echo rc=$?",
        *(f"echo {SEP}allow; ifquery -i {f} --list --allow {shlex.quote(c)}; echo rc=$?" for c in classes),
        *(f"echo {SEP}query; ifquery -i {f} -- {shlex.quote(n)}; echo rc=$?" for n in names),
        f"echo {SEP}up; ifup -n -v {'' if mappings else '--no-mappings'} --state-dir {state} -i {f} -- {quoted}"
        if names
        else "",
    ]
    result = subprocess.run(["sh", "-c", "\n".join(lines)], capture_output=True, check=False, timeout=120, cwd=state)
    subprocess.run(["rm", "-rf", state], check=False)
    stdout = result.stdout.decode("utf-8", "surrogateescape")
    stderr = result.stderr.decode("utf-8", "surrogateescape").replace(str(path), "FILE")
    about_file = re.compile(r"^(?:ifquery|ifup): (FILE.*)$")
    verbose = re.compile(r"^(?:ifquery|ifup): (?:parsing file|reading directory) (.*)$")
    lines = stderr.splitlines()
    complaints = tuple(dict.fromkeys(m[1] for line in lines if (m := about_file.match(line))))
    failed = "couldn't read interfaces file" in stderr
    sourced = tuple(dict.fromkeys(m[1] for line in lines if (m := verbose.match(line)) and "parsing" in line))
    rest = "\n".join(line for line in lines if not about_file.match(line) and not verbose.match(line))
    return Answer(stdout.replace(str(path), "FILE") + "\n--stderr--\n" + rest, complaints, failed, sourced)


@dataclass(frozen=True)
class Verdict:
    agree: bool
    why: str


def names_and_classes(raw: bytes, parsed: Interfaces | None) -> tuple[list[str], list[str]]:
    """Ask about everything either side could have read, so a dropped stanza cannot go unasked."""
    names = {m.decode("utf-8", "surrogateescape") for m in IFACE_WORD.findall(raw)}
    classes = {m.decode("utf-8", "surrogateescape") for m in ALLOW_WORD.findall(raw)}
    if parsed is not None:
        names |= {s.name for s in parsed.stanzas} | {n for v in parsed.allow.values() for n in v}
        classes |= set(parsed.allow)
    return sorted(n for n in names if "\x00" not in n), sorted(c for c in classes if "\x00" not in c)


def compare(folder: Path, raw: bytes, mappings: bool = False, reading: Interfaces | None = None) -> Verdict:
    """Our reading of `raw` (placed at folder/interfaces) against ifupdown's.

    `reading` replaces the parser's own reading: the sensitivity tests pass a
    damaged one and expect a disagreement.
    """
    original = folder / "interfaces"
    original.write_bytes(raw)
    error: InterfacesError | None = None
    parsed = reading
    if parsed is None:
        try:
            parsed = load(str(original), HostFiles("/"))
        except InterfacesError as exc:
            error = exc
    names, classes = names_and_classes(raw, parsed)
    theirs = ask(original, names, classes, mappings)
    if error is not None:
        expected = f"{error.file}:{error.line}: {error.reason}".replace(str(original), "FILE")
        if error.line == 0 and theirs.complaints + ((theirs.stdout,) if theirs.failed else ()):
            return Verdict(True, "both refuse")
        if expected in theirs.complaints:
            return Verdict(True, "both refuse")
        return Verdict(False, f"we refuse ({error}) but ifquery says {theirs.complaints or 'nothing'}")
    assert parsed is not None
    if theirs.failed:
        return Verdict(False, f"ifquery refuses ({theirs.complaints}) but we read it")
    ours_warned = tuple(str(w).replace(str(original), "FILE") for w in parsed.warnings)
    if set(ours_warned) != set(theirs.complaints):
        return Verdict(False, f"complaints differ: ours {ours_warned} theirs {theirs.complaints}")
    if reading is None and set(parsed.files[1:]) != set(theirs.sourced):
        return Verdict(False, f"sourced files differ: ours {parsed.files[1:]} theirs {theirs.sourced}")
    written = folder / "written"
    written.write_text(write(parsed), encoding="utf-8", errors="surrogateescape")
    mine = ask(written, names, classes, mappings)
    if mine.complaints or mine.failed:
        return Verdict(False, f"our written reading is refused: {mine.complaints}")
    if mine.stdout != theirs.stdout:
        return Verdict(False, _first_difference(theirs.stdout, mine.stdout))
    return Verdict(True, "same reading")


def _first_difference(theirs: str, ours: str) -> str:
    import difflib

    diff = list(difflib.unified_diff(theirs.splitlines(), ours.splitlines(), "ifupdown", "ours", n=1, lineterm=""))
    return "readings differ:\n" + "\n".join(diff[:30])
