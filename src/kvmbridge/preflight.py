"""The one preflight of `install`, `install --dry-run`, `diff` and `validate --root`.

profile → rendered files → real-parser verdict → plan → safety findings →
decision, as one value. Its only side effects are reading: the profile, the
templates, the target root (and the running host when the root is `/`). Each
command prints the part it shows; `cli` picks the exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .advice import profile_warnings
from .errors import ProfileError, RefusedError
from .fileset import RenderedSet
from .findings import Report
from .model import HostProfile
from .plan import Plan, make_plan
from .root import Root
from .state import State, read_state
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
    warnings: tuple[str, ...]
    root: Path | None
    target: Root | None
    plan: Plan | None
    safety: Report | None

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
        assert self.plan is not None and self.safety is not None
        if self.safety.errors and not force:
            return RefusedError(
                f"{self.root}: {len(self.safety.errors)} safety error(s) above; nothing was changed "
                "(fix them, or install --force if you are sure)"
            )
        return plan_refusal(self.plan, force)


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
    warnings = tuple(f"{profile_path}: {key}: {msg}" for key, msg in profile_warnings(model))
    if root is None or verdict.errors:
        return Preflight(profile_path, model, files, verdict, warnings, root, None, None, None)
    target = Root(root)
    if gate is not None:
        gate(target)
    state = read_state(target)
    safety = _safety(model, files, target, state)
    made = make_plan(files, target, state) if plan else None
    return Preflight(profile_path, model, files, verdict, warnings, root, target, made, safety)


def _safety(model: HostProfile, files: RenderedSet, target: Root, state: State) -> Report:
    """Safety checks against the target; the running host is consulted only when the root is `/`."""
    from .hostscan import read_live_host
    from .safety import check_target

    live = read_live_host() if target.is_live else None
    return check_target(model, files, target, state, live)
