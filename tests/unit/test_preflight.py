"""Preflight rules, exit codes and rendering over hand-made facts (no database)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from cdc.preflight import (
    EXIT_BLOCKED,
    EXIT_READY,
    EXIT_WARNINGS,
    Finding,
    PublicationFacts,
    Report,
    RoleFacts,
    Severity,
    SlotInfo,
    SourceFacts,
    TableFacts,
    assess,
    render,
)
from cdc.preflight.rules import ident, qualified, size

DSN = "postgresql://app:***@db:5432/app"
SUPER = RoleFacts("postgres", superuser=True, replication=False, rds_replication=None, can_create_in_database=True)
PLAIN = RoleFacts("app", superuser=False, replication=False, rds_replication=None, can_create_in_database=False)


def table(name: str = "orders", **kw: Any) -> TableFacts:
    base: dict[str, Any] = dict(
        schema="public",
        name=name,
        kind="r",
        replica_identity="d",
        has_primary_key=True,
        has_identity_index=False,
        can_select=True,
        owned=True,
    )
    return TableFacts(**{**base, **kw})


def slot(name: str, **kw: Any) -> SlotInfo:
    base: dict[str, Any] = dict(
        slot_name=name,
        plugin="pgoutput",
        database="app",
        active=False,
        retained_wal_bytes=0,
        slot_type="logical",
        wal_status="reserved",
    )
    return SlotInfo(**{**base, **kw})


def facts(**kw: Any) -> SourceFacts:
    base: dict[str, Any] = dict(
        database="app",
        server_version=150004,
        in_recovery=False,
        wal_level="logical",
        max_replication_slots=10,
        max_wal_senders=10,
        wal_senders_in_use=0,
        role=SUPER,
        tables=(table(),),
        publications=(),
        slots=(),
    )
    return SourceFacts(**{**base, **kw})


def check(f: SourceFacts, tables: list[str] | None = None, source: str | None = None) -> Report:
    return assess(f, DSN, tables, source)


def only(report: Report, name: str) -> Finding:
    found = [f for f in report.findings if f.check == name]
    assert len(found) == 1, found
    return found[0]


def severities(report: Report, name: str) -> list[Severity]:
    return [f.severity for f in report.findings if f.check == name]


def test_ready_database() -> None:
    report = check(facts())
    assert report.exit_code == EXIT_READY and report.ready and not report.blocking and not report.warnings
    assert report.tables == ("public.orders",)
    assert (report.source, report.slot, report.publication) == ("app", "cdc_app", "cdc_app")


def test_wal_level_not_logical_blocks_with_fix() -> None:
    report = check(facts(wal_level="replica"))
    f = only(report, "wal_level")
    assert f.severity is Severity.BLOCKING and "'replica'" in f.message
    assert f.fix is not None and "ALTER SYSTEM SET wal_level = logical" in f.fix and "restart" in f.fix
    assert report.exit_code == EXIT_BLOCKED and report.blocking == [f]


@pytest.mark.parametrize(
    ("used", "own", "expected"),
    [
        (10, False, Severity.BLOCKING),
        (9, False, Severity.WARNING),
        (5, False, Severity.INFO),
        (10, True, Severity.INFO),
    ],
)
def test_replication_slot_headroom(used: int, own: bool, expected: Severity) -> None:
    slots = tuple(slot(f"s{i}", active=True) for i in range(used - 1)) + (slot("cdc_app" if own else "x", active=True),)
    f = only(check(facts(slots=slots)), "replication_slots")
    assert f.severity is expected and f"{used} of max_replication_slots = 10" in f.message
    if expected is not Severity.INFO:
        assert f.fix is not None and "max_replication_slots" in f.fix


@pytest.mark.parametrize(("busy", "expected"), [(10, Severity.BLOCKING), (9, Severity.WARNING), (3, Severity.INFO)])
def test_wal_sender_headroom(busy: int, expected: Severity) -> None:
    assert severities(check(facts(wal_senders_in_use=busy)), "wal_senders") == [expected]


@pytest.mark.parametrize(
    ("role", "expected", "fix"),
    [
        (SUPER, Severity.INFO, None),
        (dataclasses.replace(PLAIN, replication=True), Severity.INFO, None),
        (dataclasses.replace(PLAIN, rds_replication=True), Severity.INFO, None),
        (PLAIN, Severity.BLOCKING, "ALTER ROLE app WITH REPLICATION"),
        (dataclasses.replace(PLAIN, rds_replication=False), Severity.BLOCKING, "GRANT rds_replication TO app;"),
    ],
)
def test_replication_role(role: RoleFacts, expected: Severity, fix: str | None) -> None:
    f = only(check(facts(role=role)), "replication_role")
    assert f.severity is expected
    assert (f.fix is None) if fix is None else (fix in (f.fix or ""))


def test_missing_select_blocks_per_table() -> None:
    role = dataclasses.replace(PLAIN, replication=True, can_create_in_database=True)
    report = check(facts(role=role, tables=(table(), table("Items", can_select=False))))
    [f] = [f for f in report.blocking if f.check == "select"]
    assert f.subject == "public.Items" and f.fix == 'GRANT SELECT ON public."Items" TO app;'


@pytest.mark.parametrize(
    ("ident_", "pk", "index", "usable"),
    [
        ("d", True, False, True),
        ("d", False, False, False),
        ("n", True, False, False),
        ("f", False, False, True),
        ("i", False, True, True),
        ("i", False, False, False),
    ],
)
def test_identity_decides_capture(ident_: str, pk: bool, index: bool, usable: bool) -> None:
    t = table("t", replica_identity=ident_, has_primary_key=pk, has_identity_index=index)
    report = check(facts(tables=(table(), t)))
    assert ("public.t" in report.tables) is usable
    found = [f for f in report.findings if f.check == "replica_identity"]
    if usable:
        assert not found
    else:
        assert [f.severity for f in found] == [Severity.WARNING] and found[0].subject == "public.t"
        assert "REPLICA IDENTITY FULL" in (found[0].fix or "") and "leaves the table out" in found[0].message
        assert report.exit_code == EXIT_WARNINGS


def test_nothing_to_capture_blocks() -> None:
    report = check(facts(tables=(table(has_primary_key=False),)))
    assert ("tables", Severity.BLOCKING) in {(f.check, f.severity) for f in report.findings}
    assert report.exit_code == EXIT_BLOCKED


def test_named_tables_missing_and_short_names() -> None:
    report = check(facts(tables=(table(), table("items"))), ["orders", "public.nope"])
    assert report.tables == ("public.orders",)
    f = [f for f in report.blocking if f.check == "tables"]
    assert len(f) == 1 and "public.nope" in f[0].message


def test_a_partitioned_table_is_captured_through_its_root_and_its_limits_are_named() -> None:
    parted = table("events", kind="p")
    default = check(facts(tables=(table(), parted)))
    f = only(default, "partitioned")
    assert f.severity is Severity.INFO and "publish_via_partition_root = true" in f.message
    assert "TRUNCATE of a single partition" in f.message
    assert default.tables == ("public.events", "public.orders")
    assert check(facts(tables=(table(), parted)), ["orders", "events"]).exit_code == EXIT_READY


def test_toast_notes_only_without_full_identity() -> None:
    default = check(facts(tables=(table(toastable=("body", "tags")),)))
    f = only(default, "toast")
    assert f.severity is Severity.INFO and "body, tags" in f.message and "REPLICA IDENTITY FULL" in (f.fix or "")
    assert default.exit_code == EXIT_READY
    assert not severities(check(facts(tables=(table(toastable=("body",), replica_identity="f"),))), "toast")


def test_toast_columns_debezium_sends_as_null_warn_with_the_fix() -> None:
    found = check(facts(tables=(table(toastable=("body", "blob"), toast_lost=("blob",)),)))
    lost = [f for f in found.findings if f.check == "toast" and f.severity is Severity.WARNING]
    assert len(lost) == 1 and "(blob)" in lost[0].message and "NULL" in lost[0].message
    assert "REPLICA IDENTITY FULL" in (lost[0].fix or "")
    assert any(f.check == "toast" and f.severity is Severity.INFO and "(body)" in f.message for f in found.findings)


def test_unbounded_numeric_is_noted() -> None:
    f = only(check(facts(tables=(table(unbounded_numeric=("price",)),))), "numeric")
    assert f.severity is Severity.INFO and "price" in f.message and "String" in f.message


def test_publication_rules() -> None:
    role = dataclasses.replace(PLAIN, replication=True)
    plain = check(facts(role=role))
    msgs = [f.message for f in plain.blocking if f.check == "publication"]
    assert len(msgs) == 1 and "lacks CREATE on database app" in msgs[0]
    not_owned = check(facts(role=dataclasses.replace(role, can_create_in_database=True), tables=(table(owned=False),)))
    [f] = [f for f in not_owned.blocking if f.check == "publication"]
    assert "does not own public.orders" in f.message and "CREATE PUBLICATION cdc_app FOR TABLE public.orders;" in (
        f.fix or ""
    )
    same = PublicationFacts("cdc_app", False, False, owned=False, tables=("public.orders",))
    assert severities(check(facts(role=role, tables=(table(owned=False),), publications=(same,))), "publication") == [
        Severity.INFO
    ]
    other = dataclasses.replace(same, tables=("public.old",))
    fixes = [f.fix or "" for f in check(facts(role=role, publications=(other,))).blocking if f.check == "publication"]
    assert fixes == ["as its owner: ALTER PUBLICATION cdc_app SET TABLE public.orders;"]
    everything = PublicationFacts("cdc_app", True, False, owned=True)
    [f] = check(facts(publications=(everything,))).blocking
    assert f.check == "publication" and "FOR ALL TABLES" in f.message


@pytest.mark.parametrize(
    ("own", "expected", "words"),
    [
        (None, Severity.INFO, "does not exist yet"),
        (slot("cdc_app", retained_wal_bytes=2048), Severity.INFO, "resumes from it (it holds 2.0 kB of WAL)"),
        (slot("cdc_app", retained_wal_bytes=5 << 30), Severity.WARNING, "5.0 GB"),
        (slot("cdc_app", active=True), Severity.WARNING, "in use"),
        (slot("cdc_app", plugin="test_decoding"), Severity.BLOCKING, "test_decoding"),
        (slot("cdc_app", database="other"), Severity.BLOCKING, "database other"),
        (slot("cdc_app", slot_type="physical", plugin=None, database=None), Severity.BLOCKING, "physical"),
        (slot("cdc_app", wal_status="lost"), Severity.BLOCKING, "lost WAL"),
    ],
)
def test_own_slot(own: SlotInfo | None, expected: Severity, words: str) -> None:
    f = only(check(facts(slots=(own,) if own else ())), "slot")
    assert f.severity is expected and words in f.message


def test_idle_slots_that_hold_wal_warn() -> None:
    slots = (
        slot("old", retained_wal_bytes=3 << 20),
        slot("busy", active=True, retained_wal_bytes=1 << 20),
        slot("fresh", retained_wal_bytes=None),
    )
    report = check(facts(slots=slots))
    f = only(report, "idle_slot")
    assert f.subject == "old" and "3.0 MB" in f.message and f.fix is not None and "'old'" in f.fix
    assert report.exit_code == EXIT_WARNINGS


def test_standby_and_source_name() -> None:
    assert severities(check(facts(in_recovery=True)), "recovery") == [Severity.BLOCKING]
    assert severities(check(facts(in_recovery=True, server_version=160002)), "recovery") == [Severity.WARNING]
    report = check(facts(database="my.app"))
    assert severities(report, "source_name") == [Severity.BLOCKING]
    assert check(facts(database="my.app"), source="my_app").slot == "cdc_my_app"


def test_identifiers_and_sizes() -> None:
    assert ident("orders") == "orders" and ident("Odd Name") == '"Odd Name"' and ident('a"b') == '"a""b"'
    assert qualified("Sales.order items") == '"Sales"."order items"'
    assert (size(None), size(100), size(2048), size(3 << 30)) == ("nothing", "100 bytes", "2.0 kB", "3.0 GB")


def test_text_rendering() -> None:
    report = check(
        facts(wal_level="replica", slots=(slot("old", retained_wal_bytes=10),), tables=(table(toastable=("body",)),))
    )
    out = render.text(report)
    lines = out.splitlines()
    assert lines[0] == f"preflight {DSN}"
    first = next(i for i, line in enumerate(lines) if line.startswith("BLOCKING"))
    assert "wal_level" in lines[first] and lines[first + 1].strip().startswith("fix: ALTER SYSTEM")
    assert any(line.startswith("info      toast") for line in lines)
    assert any(line.startswith("ok        wal_senders") for line in lines)
    assert "replication slots:" in out and "retains 10 bytes" in out
    assert lines[-1] == "1 blocking, 1 warning(s), 8 ok: not ready: fix the blocking findings (exit 1)"


def test_json_rendering() -> None:
    report = check(facts(tables=(table(), table("notes", has_primary_key=False))))
    doc = json.loads(render.json_text(report))
    assert doc["summary"]["exit_code"] == EXIT_WARNINGS and doc["summary"]["warning"] == 1
    assert doc["findings"][0] == {
        "check": "replica_identity",
        "severity": "warning",
        "subject": "public.notes",
        "message": doc["findings"][0]["message"],
        "fix": doc["findings"][0]["fix"],
    }
    assert doc["tables"] == ["public.orders"] and doc["dsn"] == DSN and doc["slots"] == []
