"""Views of a Plan: git-style unified diffs and a semantic summary. Pure functions."""

from __future__ import annotations

import difflib
from typing import Any

from .plan import Change, format_for, parse_or_none
from .profile import path_label


def _lines(data: bytes | None, link: str | None) -> list[str]:
    if link is not None:
        return [f"symbolic link to {link}\n"]
    if data is None:
        return []
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def unified(change: Change) -> str:
    """A git-style diff; new files come from /dev/null, removed ones go to it."""
    if not change.writes and change.status != "equivalent":
        return ""
    rel = path_label(change.path.lstrip("/"))  # a stray golden file's name must not add a line
    old = _lines(change.old.data, change.old.link) if change.old.kind != "missing" else []
    new = _lines(change.new.data, change.new.link) if change.new is not None else []
    before = "/dev/null" if change.old.kind == "missing" else f"a/{rel}"
    after = "/dev/null" if change.new is None else f"b/{rel}"
    out = [f"diff --kvmbridge a/{rel} b/{rel}\n"]
    for line in difflib.unified_diff(old, new, before, after):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out) if len(out) > 1 else ""


def semantic(change: Change) -> list[str]:
    """What a change means, computed with deepdiff over the parsed files."""
    rel = path_label(change.path.lstrip("/"))
    if change.status == "create":
        return [f"new file {rel}"]
    if change.new is None:
        return [f"remove {rel}" + (" (changed since kvmbridge wrote it)" if change.status == "drift" else "")]
    if change.status == "unchanged":
        return []
    if change.status == "equivalent":
        return [f"{rel}: equivalent (differs only in comments, quoting or whitespace); left as it is"]
    if change.new.link is not None or change.old.link is not None:
        return [f"{rel}: symlink {change.old.link} → {change.new.link}"]
    fmt = change.new.format
    old, new = parse_or_none(change.path, change.old.data, fmt), parse_or_none(change.path, change.new.data, fmt)
    prefix = "changed since kvmbridge wrote it; " if change.status == "drift" else ""
    if old is None or new is None:
        return [f"{prefix}{rel}: rewritten (the current file does not parse)"]
    view = format_for(change.path, fmt).describe_view
    lines = describe(view(old), view(new))
    if not lines:
        same_bytes = change.old.data == change.new.data
        lines = [f"mode {change.old.mode:04o} → {change.mode:04o}" if same_bytes else "comments only"]
    return [f"{prefix}{rel}: {line}" for line in lines] or [f"{prefix}{rel}: rewritten"]


def describe(old: Any, new: Any) -> list[str]:
    """Human lines from a deepdiff tree: `br0 inet: bridge_stp off → on`."""
    from deepdiff import DeepDiff

    tree = DeepDiff(_setify(old), _setify(new), view="tree", threshold_to_diff_deeper=0)
    out: list[str] = []
    for kind, levels in sorted(tree.items()):
        for level in levels:
            where = _where(level.path(output_format="list"))
            if kind in ("values_changed", "type_changes"):
                out.append(f"{where} {_show(level.t1)} → {_show(level.t2)}")
            elif kind.endswith("_added"):
                out.append(f"{where} added: {_show(level.t2)}")
            elif kind.endswith("_removed"):
                out.append(f"{where} removed: {_show(level.t1)}")
    return sorted(out)


def _setify(value: Any) -> Any:
    """Lists of names (auto, source) read best as sets: `auto added: br0`, not `auto[0] eth0 → lo`."""
    if isinstance(value, dict):
        return {k: _setify(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return set(value)
    if isinstance(value, list):
        return [_setify(v) for v in value]
    return value


def _where(path: list[Any]) -> str:
    parts = [str(p) for p in path if p not in ("ifaces", "options", "network") and not isinstance(p, int | None)]
    parts = [p.lstrip("@") for p in parts]
    return " ".join(parts) if parts else "(file)"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        if set(value) == {"method", "options"}:
            return f"method {value['method']}" + "".join(f", {k} {v}" for k, v in value["options"].items())
        return ", ".join(f"{k.lstrip('@')} {_show(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple | set):
        return " ".join(sorted(_show(v) for v in value))
    return str(value)
