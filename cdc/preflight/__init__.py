"""`cdc preflight`: is a PostgreSQL database ready for the bridge, and what to fix if not.

Facts are read in one read-only session (:func:`cdc.adapters.postgres_facts.read_preflight_facts`,
wired by :func:`cdc.bootstrap.preflight`), judged by pure rules (:func:`assess`) and rendered
(:mod:`cdc.preflight.render`). Changes nothing on the database.
"""

from __future__ import annotations

from cdc.ports import SlotInfo
from cdc.preflight.assess import assess
from cdc.preflight.facts import PublicationFacts, RoleFacts, SourceFacts, TableFacts
from cdc.preflight.report import EXIT_BLOCKED, EXIT_READY, EXIT_WARNINGS, Finding, Report, Severity

__all__ = [
    "EXIT_BLOCKED",
    "EXIT_READY",
    "EXIT_WARNINGS",
    "Finding",
    "PublicationFacts",
    "Report",
    "RoleFacts",
    "Severity",
    "SlotInfo",
    "SourceFacts",
    "TableFacts",
    "assess",
]
