"""Per-table preflight rules: which tables the bridge would capture, and what to know about each.

Pure. The selection mirrors `cdc run`: named tables (``table`` alone means ``public.table``) or
every ordinary table; a table whose updates and deletes do not identify their row is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdc.preflight.facts import RoleFacts, TableFacts
from cdc.preflight.report import Finding, Severity
from cdc.preflight.rules import ident, qualified

B, W, OK = Severity.BLOCKING, Severity.WARNING, Severity.INFO


@dataclass(frozen=True)
class Selection:
    """The tables looked at, the ones the bridge would capture, and findings about the choice."""

    looked_at: tuple[TableFacts, ...]
    captured: tuple[TableFacts, ...]
    findings: tuple[Finding, ...]


def qualify(name: str) -> str:
    return name if "." in name else f"public.{name}"


def select(tables: Sequence[TableFacts], wanted: Sequence[str] | None) -> Selection:
    by_name = {t.qualified: t for t in tables}
    findings: list[Finding] = []
    if wanted:
        names = list(dict.fromkeys(qualify(w) for w in wanted))
        missing = [n for n in names if n not in by_name]
        if missing:
            findings.append(
                Finding(
                    "tables",
                    B,
                    f"table(s) not found: {', '.join(missing)}",
                    "name existing tables as schema.table in --tables (comma separated)",
                )
            )
        looked_at = tuple(by_name[n] for n in names if n in by_name)
    else:
        looked_at = tuple(sorted(tables, key=lambda t: t.qualified))
    captured = tuple(t for t in looked_at if t.has_usable_identity)
    for t in looked_at:
        if not t.has_usable_identity:
            findings.append(_no_identity(t))
        elif t.partitioned:
            findings.append(_partitioned(t))
    if captured:
        names_ = ", ".join(t.qualified for t in captured)
        findings.append(Finding("tables", OK, f"{len(captured)} table(s) to capture: {names_}"))
    elif not any(f.severity is B for f in findings):
        findings.append(
            Finding(
                "tables",
                B,
                "nothing to capture: no ordinary table with a primary key or a usable replica identity",
                "add a primary key to the tables to capture, or name them with --tables",
            )
        )
    return Selection(looked_at, captured, tuple(findings))


def _no_identity(t: TableFacts) -> Finding:
    name = qualified(t.qualified)
    why = "REPLICA IDENTITY NOTHING" if t.replica_identity == "n" else "no primary key"
    if t.replica_identity == "i":
        why = "REPLICA IDENTITY USING INDEX without that index"
    return Finding(
        "replica_identity",
        W,
        f"{t.qualified} has {why}: updates and deletes cannot be mirrored, so the bridge leaves the table out",
        f"add a primary key (ALTER TABLE {name} ADD PRIMARY KEY (…)), or ALTER TABLE {name} REPLICA IDENTITY FULL;",
        t.qualified,
    )


def _partitioned(t: TableFacts) -> Finding:
    return Finding(
        "partitioned",
        OK,
        f"{t.qualified} is partitioned: captured through its root (one mirror; the publication is made "
        "WITH (publish_via_partition_root = true), partitions attached later included). PostgreSQL does not "
        "replicate TRUNCATE of a single partition, nor DETACH or DROP of one: their rows stay in the mirror",
        "empty a partition with DELETE, or resync the table after TRUNCATE/DETACH/DROP of a partition",
        t.qualified,
    )


def privileges(captured: Sequence[TableFacts], r: RoleFacts) -> list[Finding]:
    """The snapshot reads every captured table with SELECT."""
    out: list[Finding] = []
    for t in captured:
        if not t.can_select:
            out.append(
                Finding(
                    "select",
                    B,
                    f"role {r.name} cannot SELECT from {t.qualified} (the snapshot reads it)",
                    f"GRANT SELECT ON {qualified(t.qualified)} TO {ident(r.name)};",
                    t.qualified,
                )
            )
    if captured and not out:
        out.append(Finding("select", OK, f"role {r.name} can SELECT from every captured table"))
    return out


def toast(captured: Sequence[TableFacts]) -> list[Finding]:
    """Unchanged TOASTed values are not in the WAL record of an update unless REPLICA IDENTITY FULL."""
    out: list[Finding] = []
    for t in captured:
        if t.replica_identity not in ("d", "i"):
            continue
        repaired = [c for c in t.toastable if c not in t.toast_lost]
        fix = f"ALTER TABLE {qualified(t.qualified)} REPLICA IDENTITY FULL; (more WAL per update and delete)"
        if t.toast_lost:
            cols = ", ".join(t.toast_lost)
            out.append(
                Finding(
                    "toast",
                    W,
                    f"{t.qualified} has TOAST-able columns ({cols}) whose large value, when an update leaves it "
                    "unchanged, Debezium sends as NULL: the mirror cannot tell it from a real NULL and shows NULL",
                    f"so Debezium sends the value itself: {fix}",
                    t.qualified,
                )
            )
        if repaired:
            out.append(
                Finding(
                    "toast",
                    OK,
                    f"{t.qualified} has TOAST-able columns ({', '.join(repaired)}): an update that leaves a large "
                    "value unchanged delivers Debezium's placeholder for it: the mirror and the domain events keep "
                    "the stored value; the change log carries the placeholder",
                    f"for full values in every change: {fix}",
                    t.qualified,
                )
            )
    return out


def numerics(captured: Sequence[TableFacts]) -> list[Finding]:
    out: list[Finding] = []
    for t in captured:
        if t.unbounded_numeric:
            cols = ", ".join(t.unbounded_numeric)
            out.append(
                Finding(
                    "numeric",
                    OK,
                    f"{t.qualified}: numeric column(s) without a precision ({cols}) are kept exactly, "
                    "as text (ClickHouse String)",
                    "only if a ClickHouse Decimal is wanted, declare a precision: "
                    f"ALTER TABLE {qualified(t.qualified)} ALTER COLUMN … TYPE numeric(p, s);",
                    t.qualified,
                )
            )
    return out
