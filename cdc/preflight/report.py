"""Findings and the report that carries them: what is wrong, how bad, and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cdc.ports import SlotInfo

EXIT_READY, EXIT_BLOCKED, EXIT_WARNINGS = 0, 1, 2


class Severity(StrEnum):
    """``blocking``: the bridge cannot run (or would fail) until fixed; ``warning``: it runs, but
    something is lost, left out or at risk; ``info``: fine, or worth knowing."""

    BLOCKING = "blocking"
    WARNING = "warning"
    INFO = "info"


_RANK = {Severity.BLOCKING: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of one check. ``subject`` names the table or slot it is about, if any."""

    check: str
    severity: Severity
    message: str
    fix: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class Report:
    """The verdict on one source database.

    ``tables`` are the tables `cdc run` would capture with the same ``--tables``; ``slot`` and
    ``publication`` are the names the bridge uses (``cdc_<source>``).
    """

    dsn: str  # password already removed
    database: str
    role: str
    source: str
    slot: str
    publication: str
    tables: tuple[str, ...]
    findings: tuple[Finding, ...]
    slots: tuple[SlotInfo, ...] = ()

    @property
    def blocking(self) -> list[Finding]:
        """Problems that stop the bridge: `cdc run` should refuse to start while any remain."""
        return [f for f in self.findings if f.severity is Severity.BLOCKING]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ready(self) -> bool:
        return not self.blocking

    @property
    def exit_code(self) -> int:
        """0 ready, 1 something blocks, 2 warnings only."""
        if self.blocking:
            return EXIT_BLOCKED
        return EXIT_WARNINGS if self.warnings else EXIT_READY

    def ordered(self) -> list[Finding]:
        """Blocking first, then warnings, then the rest; check order within each."""
        return sorted(self.findings, key=lambda f: _RANK[f.severity])
