"""Server-wide preflight rules: WAL level, slot and sender headroom, role, slots, publication.

Pure functions over :mod:`cdc.preflight.facts`. Each says what it found, how bad it is and
the statement that fixes it. Table rules live in :mod:`cdc.preflight.table_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cdc.ports import SlotInfo
from cdc.preflight.facts import PublicationFacts, RoleFacts, SourceFacts, TableFacts
from cdc.preflight.report import Finding, Severity

B, W, OK = Severity.BLOCKING, Severity.WARNING, Severity.INFO
_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")
_BIG_RETAINED = 1 << 30  # the bridge's own idle slot: worth a warning past 1 GiB of held WAL
_RESTART = "then restart PostgreSQL (a reload is not enough)"


def ident(name: str) -> str:
    """``name`` as an SQL identifier, quoted when it needs to be."""
    return name if _PLAIN_IDENT.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def qualified(table: str) -> str:
    """``schema.table`` as SQL (each part quoted when needed)."""
    schema, _, name = table.partition(".")
    return f"{ident(schema)}.{ident(name)}"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def size(n: int | None) -> str:
    if n is None:
        return "nothing"
    value = float(n)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def server(f: SourceFacts) -> list[Finding]:
    out: list[Finding] = []
    if f.in_recovery:
        if f.server_version < 160000:
            out.append(
                Finding(
                    "recovery",
                    B,
                    "this server is a standby: before PostgreSQL 16 logical decoding runs only on a primary",
                    "point the bridge (and preflight) at the primary",
                )
            )
        else:
            out.append(
                Finding(
                    "recovery",
                    W,
                    "this server is a standby: the bridge cannot create its publication here",
                    "create the publication on the primary first (see the publication finding)",
                )
            )
    if f.wal_level == "logical":
        out.append(Finding("wal_level", OK, "wal_level is logical"))
    else:
        out.append(
            Finding(
                "wal_level",
                B,
                f"wal_level is '{f.wal_level}'; logical decoding (Debezium's pgoutput) needs 'logical'",
                f"ALTER SYSTEM SET wal_level = logical; {_RESTART}. Managed services use their own parameter "
                "(Amazon RDS/Aurora: rds.logical_replication = 1 in the parameter group)",
            )
        )
    return out


def capacity(f: SourceFacts, own_slot: SlotInfo | None) -> list[Finding]:
    """Headroom in replication slots (the bridge needs one unless its slot exists) and WAL senders."""
    out: list[Finding] = []
    used, top = len(f.slots), f.max_replication_slots
    free = top - used
    text = f"{used} of max_replication_slots = {top} in use"
    fix = (
        f"ALTER SYSTEM SET max_replication_slots = {max(top + 4, 10)}; {_RESTART}; or drop a slot nothing "
        "uses any more: SELECT pg_drop_replication_slot('<name>');"
    )
    if own_slot is not None:
        out.append(Finding("replication_slots", OK, f"{text}; the bridge's slot exists already"))
    elif free <= 0:
        out.append(Finding("replication_slots", B, f"{text}: no free slot for the bridge", fix))
    elif free == 1:
        out.append(Finding("replication_slots", W, f"{text}: the bridge takes the last free slot", fix))
    else:
        out.append(Finding("replication_slots", OK, f"{text}; {free} free"))
    busy, senders = f.wal_senders_in_use, f.max_wal_senders
    free = senders - busy
    text = f"{busy} of max_wal_senders = {senders} in use"
    fix = f"ALTER SYSTEM SET max_wal_senders = {max(senders + 4, 10)}; {_RESTART}"
    if free <= 0:
        out.append(Finding("wal_senders", B, f"{text}: no WAL sender left for the bridge's stream", fix))
    elif free == 1:
        out.append(Finding("wal_senders", W, f"{text}: the bridge's stream takes the last one", fix))
    else:
        out.append(Finding("wal_senders", OK, f"{text}; {free} free"))
    return out


def role(r: RoleFacts) -> list[Finding]:
    if r.superuser:
        return [Finding("replication_role", OK, f"role {r.name} is a superuser")]
    if r.replication:
        return [Finding("replication_role", OK, f"role {r.name} has the REPLICATION attribute")]
    if r.rds_replication:
        return [Finding("replication_role", OK, f"role {r.name} is a member of rds_replication")]
    fix = (
        f"GRANT rds_replication TO {ident(r.name)};"
        if r.rds_replication is not None
        else (f"ALTER ROLE {ident(r.name)} WITH REPLICATION; (as a superuser)")
    )
    return [
        Finding(
            "replication_role",
            B,
            f"role {r.name} may not stream changes: it is neither superuser nor has "
            "the REPLICATION attribute (needed to create and read the replication slot)",
            fix,
        )
    ]


def own_slot(f: SourceFacts, slot: SlotInfo | None, name: str) -> list[Finding]:
    """The bridge's slot ``cdc_<source>``: absent (created on first start), reusable, or in the way."""
    if slot is None:
        return [
            Finding(
                "slot",
                OK,
                f"slot {name} does not exist yet: the bridge creates it (pgoutput) on its first "
                "start and snapshots the tables",
                subject=name,
            )
        ]
    drop = f"SELECT pg_drop_replication_slot({literal(name)});"
    if slot.slot_type != "logical" or slot.plugin != "pgoutput" or slot.database != f.database:
        what = "a physical slot" if slot.slot_type != "logical" else f"a {slot.plugin} slot of database {slot.database}"
        return [
            Finding(
                "slot",
                B,
                f"slot {name} exists but is {what}: the bridge cannot stream from it",
                f"use another --source-name, or, if nothing needs the slot: {drop}",
                name,
            )
        ]
    if slot.wal_status == "lost":
        return [
            Finding(
                "slot",
                B,
                f"slot {name} lost WAL it still needed: it can no longer resume",
                f"{drop} then start the bridge with fresh Debezium offsets (remove <state dir>/debezium/"
                "<source>.offsets) so it snapshots again",
                name,
            )
        ]
    if slot.active:
        return [
            Finding(
                "slot",
                W,
                f"slot {name} is in use: another bridge or client streams from it; Debezium "
                "retries for about a minute, then gives up",
                "stop the other consumer, or use another --source-name",
                name,
            )
        ]
    held = f"it holds {size(slot.retained_wal_bytes)} of WAL"
    if (slot.retained_wal_bytes or 0) >= _BIG_RETAINED:
        return [
            Finding(
                "slot",
                W,
                f"slot {name} exists and is idle: {held} until the bridge resumes",
                f"start the bridge soon, or if you start over: {drop}",
                name,
            )
        ]
    return [Finding("slot", OK, f"slot {name} exists: the bridge resumes from it ({held})", subject=name)]


def other_slots(slots: Sequence[SlotInfo], own: str) -> list[Finding]:
    """Idle slots keep WAL on disk forever: the classic way a CDC source fills its disk."""
    out: list[Finding] = []
    for s in slots:
        if s.slot_name == own or s.active or not s.retained_wal_bytes:
            continue
        where = f"{s.plugin} in {s.database}" if s.slot_type == "logical" else "physical"
        out.append(
            Finding(
                "idle_slot",
                W,
                f"inactive slot {s.slot_name} ({where}) holds {size(s.retained_wal_bytes)} of WAL, "
                "and more with every write until something reads it",
                f"if nothing uses it any more: SELECT pg_drop_replication_slot({literal(s.slot_name)});",
                s.slot_name,
            )
        )
    return out


def publication(f: SourceFacts, name: str, captured: Sequence[TableFacts]) -> list[Finding]:
    """The bridge's Debezium creates ``name`` FOR TABLE <captured>, or SETs its tables if they differ."""
    if not captured:
        return []
    pub = next((p for p in f.publications if p.name == name), None)
    tables = sorted(t.qualified for t in captured)
    listed = ", ".join(qualified(t) for t in tables)
    if pub is not None and pub.all_tables:
        return [
            Finding(
                "publication",
                B,
                f"publication {name} exists FOR ALL TABLES; the bridge (Debezium, "
                "publication.autocreate.mode=filtered) refuses to change it",
                f"DROP PUBLICATION {ident(name)}; (the bridge then creates it for the captured tables), "
                "or use another --source-name",
                name,
            )
        ]
    if pub is not None and sorted(pub.tables) == tables:
        return [
            Finding(
                "publication",
                OK,
                f"publication {name} exists with exactly the captured tables: used as it is",
                subject=name,
            )
        ]
    return _publication_rights(f, name, pub, captured, listed)


def _publication_rights(
    f: SourceFacts, name: str, pub: PublicationFacts | None, captured: Sequence[TableFacts], listed: str
) -> list[Finding]:
    r = f.role
    verb = "creates" if pub is None else "updates (ALTER PUBLICATION … SET TABLE)"
    if r.superuser:
        return [
            Finding("publication", OK, f"the bridge {verb} publication {name} for the captured tables", subject=name)
        ]
    create_it = f"CREATE PUBLICATION {ident(name)} FOR TABLE {listed};"
    out: list[Finding] = []
    if pub is None and not r.can_create_in_database:
        out.append(
            Finding(
                "publication",
                B,
                f"role {r.name} may not create publication {name}: it lacks CREATE on database {f.database}",
                f"GRANT CREATE ON DATABASE {ident(f.database)} TO "
                f"{ident(r.name)}; or have the tables' owner run: {create_it}",
                name,
            )
        )
    if pub is not None and not pub.owned:
        out.append(
            Finding(
                "publication",
                B,
                f"publication {name} lists other tables than the captured ones and "
                f"belongs to another role: only its owner may change it",
                f"as its owner: ALTER PUBLICATION {ident(name)} SET TABLE {listed};",
                name,
            )
        )
    foreign = [t.qualified for t in captured if not t.owned]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        out.append(
            Finding(
                "publication",
                B,
                f"adding a table to a publication requires owning it, and role {r.name} does not own {shown}",
                f"have the owner (or a superuser) prepare it before "
                f"the first start: {create_it if pub is None else _set_tables(name, listed)} "
                "— the bridge then uses it as it is",
                name,
            )
        )
    if not out:
        out.append(
            Finding("publication", OK, f"the bridge {verb} publication {name} for the captured tables", subject=name)
        )
    return out


def _set_tables(name: str, listed: str) -> str:
    return f"ALTER PUBLICATION {ident(name)} SET TABLE {listed};"
