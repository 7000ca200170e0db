"""The one preflight of `install`, `install --dry-run`, `diff` and `validate --root`.

profile → rendered files → real-parser verdict → plan → safety findings →
decision, as one value. Its only side effects are reading: the profile, the
templates, the target root (and the running host when the root is `/`). Each
command prints the part it shows; `cli` picks the exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .advice import profile_findings
from .errors import ProfileError, RefusedError
from .fileset import RenderedSet
from .findings import Finding, Report
from .model import HostProfile
from .plan import Plan, make_plan
from .root import Root
from .state import BACKUPS, LOCK, STATE, Manifest, State, read_state, unfinished_manifest
from .verify import Verdict


@dataclass(frozen=True)
class Preflight:
    """What every command that looks at a target knows before it writes (or shows) anything.

    `root` is the folder as the user named it (for messages), `target` the same as a `Root`.
    `target`, `plan` and `safety` are None when there is no root to look at, or the render
    is invalid (an invalid render never reaches a root).
    """

    profile_path: Path
    profile: HostProfile
    files: RenderedSet
    verdict: Verdict
    rule_findings: tuple[Finding, ...]
    root: Path | None
    target: Root | None
    plan: Plan | None
    safety: Report | None
    pending: Manifest | None = None

    @property
    def findings(self) -> tuple[Finding, ...]:
        """The profile rules' warnings (KB2xx), then the safety checks' findings: every command prints these."""
        return self.rule_findings + (self.safety.findings if self.safety is not None else ())

    @property
    def valid(self) -> bool:
        return not self.verdict.errors

    def require_valid(self) -> None:
        """The rendered files failed a real parser: no command may go on to a root."""
        if not self.valid:
            raise ProfileError(*(f"{self.profile_path}: {line}" for line in self.verdict.errors))

    def refusal(self, force: bool) -> RefusedError | None:
        """Why `install` (and its dry run) must stop before the first write, or None to go on.

        Safety errors first, then targets that cannot be written (links, non-files)
        and drift; `--force` lifts the safety errors, drift and a symlinked target
        itself, never a write through a linked folder.
        """
        assert self.plan is not None and self.safety is not None and self.target is not None
        if self.safety.errors and not force:
            return RefusedError(
                f"{self.root}: {len(self.safety.errors)} safety error(s) above; nothing was changed "
                "(fix them, or install --force if you are sure)"
            )
        refusal = plan_refusal(self.plan, force)
        if refusal is not None or not self.writes:
            return refusal
        return area_refusal(self.target)

    @property
    def writes(self) -> bool:
        """Whether install would open a transaction: a change to make, or a killed run's set to take over."""
        assert self.plan is not None
        return not self.plan.in_sync or self.pending is not None


def linked_area_refusal(root: Root) -> RefusedError | None:
    """Our own state and backup folders are written too: never through a link, whatever --force says."""
    for area in (STATE, f"{BACKUPS}/ID"):
        linked = root.symlinked_folder(area)
        if linked is not None:
            return RefusedError(
                f"{linked}: is a symlink (or not a folder); refusing to write through it; nothing was changed"
            )
    return None


def area_refusal(root: Root) -> RefusedError | None:
    """A root path another user could redirect, linked state/backup folders, then a lock someone else
    holds (or that is no lock file).

    Only reads: the lock is probed, never made or held, so the dry run sees what install would
    (and install itself refuses before it makes a lock file).
    """
    redirectable = root.redirectable()
    if redirectable is not None:
        return RefusedError(f"{redirectable}; as root, kvmbridge changes nothing in {root.prefix}; nothing was changed")
    linked = linked_area_refusal(root)
    if linked is not None:
        return linked
    try:
        root.probe_lock(LOCK)
    except RefusedError as exc:
        return exc
    return None


def plan_refusal(plan: Plan, force: bool) -> RefusedError | None:
    """Blocked targets, then drift (unless --force): the plan's part of the decision."""
    hard = [c for c in plan.blocked if not (c.forceable and force)]
    if hard:
        return RefusedError(
            *(f"{plan.root.path(c.path)}: {c.blocked}" for c in hard),
            "nothing was changed" + ("" if force else "; --force replaces a symlink itself"),
        )
    if plan.drifted and not force:
        return RefusedError(
            *(f"{plan.root.path(c.path)}: changed since kvmbridge wrote it (drift)" for c in plan.drifted),
            "nothing was changed; review with `kvmbridge diff`, then install --force to overwrite",
        )
    return None


def run_preflight(
    profile_path: Path,
    templates: Path | None,
    root: Path | None,
    *,
    plan: bool = True,
    gate: Callable[[Root], None] | None = None,
) -> Preflight:
    """Load, render and verify; then, with a root and a valid render, run the safety checks and plan.

    `gate`: install's own preconditions on the root (privilege, an armed boot guard),
    run before the root is read so that theirs is the refusal a user sees.
    `plan=False` (`validate --root`) skips reading the targets themselves: validate
    judges the root by its findings only.
    """
    from .profile import load_profile
    from .render import render
    from .verify import verify

    model = load_profile(profile_path)
    files = render(model, templates)
    verdict = verify(files, model)
    rules = tuple(replace(f, subject=f"{profile_path}: {f.subject}") for f in profile_findings(model))
    if root is None or verdict.errors:
        return Preflight(profile_path, model, files, verdict, rules, root, None, None, None)
    target = Root(root)
    if gate is not None:
        gate(target)
    state = read_state(target)
    safety = _safety(model, files, target, state)
    made = make_plan(files, target, state) if plan else None
    pending = unfinished_manifest(target, state)
    return Preflight(profile_path, model, files, verdict, rules, root, target, made, safety, pending)


def _safety(model: HostProfile, files: RenderedSet, target: Root, state: State) -> Report:
    """Safety checks against the target; the running host is consulted only when the root is `/`."""
    from .livehost import read_live_host
    from .safety import check_target

    live = read_live_host() if target.is_live else None
    return check_target(model, files, target, state, live)
