"""Authored events: validated against the catalog's JSON Schema of the version they name."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pytest

from cdc.domain.authored import AuthoredEventError, authored_event, message_record, schema_problems
from cdc.domain.catalog import build_catalog, json_schema, origin
from cdc.domain.events import EventRegistry, collecting, event, upcaster


@dataclass(frozen=True)
class Line:
    sku: str
    qty: int


def _registry() -> EventRegistry:
    reg = EventRegistry()
    with collecting(reg):

        @event("Escalated", version=1, aggregate="ticket", key="ticket_id", authored=True)
        @dataclass(frozen=True)
        class EscalatedV1:
            ticket_id: int
            reason: str

        @event("Escalated", version=2, aggregate="ticket", key="ticket_id", authored=True)
        @dataclass(frozen=True)
        class Escalated:
            ticket_id: int
            reason: str
            level: Literal["team", "manager"]
            refund: Decimal | None = None
            lines: tuple[Line, ...] = ()

        @upcaster("Escalated", from_version=1)
        def v1_to_v2(p: dict[str, Any]) -> dict[str, Any]:
            return {**p, "level": "team", "refund": None, "lines": []}

        @event("Opened", aggregate="ticket", key="ticket_id", tables=["public.tickets"])
        @dataclass(frozen=True)
        class Opened:
            ticket_id: int

    return reg


def _make(record: dict[str, Any], reg: EventRegistry | None = None) -> Any:
    return authored_event(
        reg or _registry(),
        record,
        source="desk",
        origin="public.outbox",
        op="c",
        lsn=1234,
        txid=77,
        commit_ts_ms=1_700_000_000_000,
    )


def test_an_outbox_row_becomes_an_event_of_the_version_it_names() -> None:
    app_id = str(uuid.uuid4())
    e = _make(
        {
            "id": app_id,
            "aggregatetype": "ticket",
            "aggregateid": "42",
            "type": "Escalated",
            "version": 1,
            "payload": '{"ticket_id": 42, "reason": "angry"}',  # a text column: the JSON itself
        }
    )
    assert (e.event_type, e.version, e.aggregate_type, e.aggregate_id) == ("Escalated", 1, "ticket", "42")
    assert e.event_id == app_id  # the application's id: it may deduplicate by it
    assert e.payload == {"ticket_id": 42, "reason": "angry"}
    assert (e.lsn, e.txid, e.occurred_at_ms, e.table, e.op) == (1234, 77, 1_700_000_000_000, "public.outbox", "c")


def test_without_a_version_the_latest_is_meant_and_without_a_uuid_the_id_comes_from_the_position() -> None:
    record = {
        "type": "Escalated",
        "payload": {
            "ticket_id": 1,
            "reason": "x",
            "level": "manager",
            "refund": "12.50",
            "lines": [{"sku": "a", "qty": 2}],
        },
    }
    e = _make(record)
    assert e.version == 2 and e.aggregate_id == "1"
    assert e.event_id == _make(record).event_id  # deterministic
    uuid.UUID(e.event_id)


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"type": "Nope", "payload": {}}, "authored event type 'Nope' from public.outbox is not in the catalog"),
        ({"payload": {}}, "has no 'type'"),
        ({"type": "Opened", "payload": {"ticket_id": 1}}, "Opened is derived from table changes"),
        (
            {"type": "Escalated", "version": 3, "payload": {}},
            "Escalated has no version 3 in the catalog (it has v1, v2)",
        ),
        ({"type": "Escalated", "version": "x", "payload": {}}, "version 'x' is not a number"),
        ({"type": "Escalated", "payload": "{"}, "payload is not JSON"),
        ({"type": "Escalated", "payload": [1]}, "payload must be a JSON object"),
        ({"type": "Escalated", "version": 1, "payload": {"ticket_id": 1}}, "payload.reason: missing"),
        (
            {"type": "Escalated", "version": 1, "payload": {"ticket_id": 1, "reason": "r", "level": "team"}},
            "payload.level: not a field of this version",
        ),
        (
            {"type": "Escalated", "version": 1, "payload": {"ticket_id": "1", "reason": "r"}},
            "expected integer, got str",
        ),
        (
            {"type": "Escalated", "version": 1, "payload": {"ticket_id": True, "reason": "r"}},
            "expected integer, got bool",
        ),
        (
            {"type": "Escalated", "payload": {"ticket_id": 1, "reason": "r", "level": "ceo"}},
            "payload.level: 'ceo' is not one of ['team', 'manager']",
        ),
        (
            {"type": "Escalated", "payload": {"ticket_id": 1, "reason": "r", "level": "team", "refund": "lots"}},
            "payload.refund: str fits none of 2 allowed shapes",
        ),
        (
            {"type": "Escalated", "payload": {"ticket_id": 1, "reason": "r", "level": "team", "lines": [{"sku": 1}]}},
            "payload.lines[0].qty: missing",
        ),
        (
            {
                "type": "Escalated",
                "aggregatetype": "order",
                "payload": {"ticket_id": 1, "reason": "r", "level": "team"},
            },
            "belongs to aggregate 'ticket', not 'order'",
        ),
        (
            {"type": "Escalated", "aggregateid": "2", "payload": {"ticket_id": 1, "reason": "r", "level": "team"}},
            "aggregateid '2' differs from the payload's ticket_id '1'",
        ),
    ],
)
def test_what_the_catalog_does_not_admit_is_refused_with_the_reason(record: dict[str, Any], words: str) -> None:
    with pytest.raises(AuthoredEventError) as caught:
        _make(record)
    assert words in str(caught.value)


def test_a_message_content_must_be_a_json_object() -> None:
    assert message_record(json.dumps({"type": "Escalated"}).encode(), "message:desk") == {"type": "Escalated"}
    with pytest.raises(AuthoredEventError, match="not JSON"):
        message_record(b"\xff\xfe", "message:desk")
    with pytest.raises(AuthoredEventError, match="must be a JSON object"):
        message_record(b"[1, 2]", "message:desk")


def test_numbers_and_formats() -> None:
    assert schema_problems({"type": "number"}, float("nan"), "x") == ["x: expected number, got float"]
    assert schema_problems({"type": "number"}, 3, "x") == []
    assert schema_problems({"type": "string", "format": "date-time"}, "2026-12-06T10:00:00+00:00", "x") == []
    assert schema_problems({"type": "string", "format": "date"}, "2026-13-01", "x") == ["x: '2026-13-01' is not a date"]
    assert schema_problems({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, [1, 1], "x") == [
        "x: items must be unique"
    ]


def test_the_catalog_says_which_events_are_authored_and_which_derived() -> None:
    reg = _registry()
    assert origin(reg, "Escalated") == "authored" and origin(reg, "Opened") == "derived"
    cat = build_catalog(reg)
    assert cat["events"]["Escalated"]["origin"] == "authored"
    assert cat["events"]["Opened"]["origin"] == "derived"
    spec = reg.latest("Escalated")
    assert spec is not None and spec.payload_class is not None
    assert json_schema(spec.payload_class, spec)["required"] == ["level", "reason", "ticket_id"]
