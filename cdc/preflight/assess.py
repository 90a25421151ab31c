"""Facts in, report out: every preflight rule applied to one source database. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from cdc.debezium.config import default_slot_name
from cdc.preflight import rules, table_rules
from cdc.preflight.facts import SourceFacts
from cdc.preflight.report import Finding, Report, Severity

# what ConnectorSettings accepts: no dots, since consumers split `<source>.<schema>.<table>` topics on them
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_\-]+")


def assess(facts: SourceFacts, dsn: str, tables: Sequence[str] | None = None, source_name: str | None = None) -> Report:
    """Judge ``facts`` for a bridge capturing ``tables`` (None: all) under ``source_name``
    (None: the database name). ``dsn`` must already be redacted: it is printed."""
    source = source_name or facts.database
    name = default_slot_name(source)  # the bridge names slot and publication alike
    own = next((s for s in facts.slots if s.slot_name == name), None)
    chosen = table_rules.select(facts.tables, tables)
    findings: list[Finding] = [*_source_name(source, explicit=source_name is not None)]
    findings += rules.server(facts)
    findings += rules.capacity(facts, own)
    findings += rules.role(facts.role)
    findings += chosen.findings
    findings += table_rules.privileges(chosen.captured, facts.role)
    findings += rules.publication(facts, name, chosen.captured)
    findings += rules.own_slot(facts, own, name)
    findings += rules.other_slots(facts.slots, name)
    findings += table_rules.toast(chosen.captured)
    findings += table_rules.numerics(chosen.captured)
    return Report(
        dsn=dsn,
        database=facts.database,
        role=facts.role.name,
        source=source,
        slot=name,
        publication=name,
        tables=tuple(t.qualified for t in chosen.captured),
        findings=tuple(findings),
        slots=facts.slots,
    )


def _source_name(source: str, explicit: bool) -> list[Finding]:
    if _SOURCE_NAME.fullmatch(source):
        return []
    cause = "--source-name" if explicit else "the database name (the default source name)"
    return [
        Finding(
            "source_name",
            Severity.BLOCKING,
            f"source name {source!r} from {cause} is not usable as a topic prefix: only letters, digits, '_' and '-'",
            "pass --source-name NAME (e.g. the database name without other characters)",
        )
    ]
