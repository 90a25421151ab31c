"""`cdc preflight`: is a PostgreSQL database ready for the bridge, and what to fix if not.

Reads facts in one read-only session (:func:`cdc.adapters.postgres_facts.read_preflight_facts`), judges them with
pure rules (:func:`assess`) and renders the verdict (:mod:`cdc.preflight.render`). Changes nothing
on the database.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdc.preflight.assess import assess
from cdc.preflight.facts import PublicationFacts, RoleFacts, SlotInfo, SourceFacts, TableFacts
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
    "check",
]


def check(dsn: str, tables: Sequence[str] | None = None, source_name: str | None = None) -> Report:
    """Check the database at ``dsn`` for a bridge capturing ``tables`` (schema.table; None: every
    table `cdc run` would take) under ``source_name`` (None: the database name).

    Opens one read-only session and changes nothing. ``Report.blocking`` lists what would stop
    the bridge. Raises :class:`cdc.errors.SourceError` when the database cannot be reached.
    """
    # imported here: the adapter imports this package's facts, so a top-level import would be circular
    from cdc.adapters.postgres import PostgresSource, redact_dsn
    from cdc.adapters.postgres_facts import read_preflight_facts

    facts = read_preflight_facts(PostgresSource(dsn, read_only=True))
    return assess(facts, redact_dsn(dsn), tables, source_name)
