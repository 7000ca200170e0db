"""A safety finding and the report that collects them: plain values, shared by every check module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """`id` is stable across releases; `severity` is error (blocks install) or warning."""

    id: str
    severity: str
    subject: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.severity}: {self.id} {self.subject}: {self.message} (fix: {self.fix})"

    def as_dict(self) -> dict[str, str]:
        return dict(vars(self))


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    def summary(self) -> str:
        counts = f"{len(self.errors)} error(s), {len(self.warnings)} warning(s), {len(self.notes)} skipped"
        return f"safety checks: {counts}" + (f" ({'; '.join(self.notes)})" if self.notes else "")
