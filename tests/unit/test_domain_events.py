"""The event model: deterministic ids, declarations the registry refuses, upcasting on read, JSON values."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.domain.events import (
    DomainEvent,
    EventDefinitionError,
    EventRegistry,
    EventSpec,
    Payload,
    collecting,
    correlation_id,
    event,
    event_id,
    load_modules,
    payload_dict,
    to_json_value,
    upcaster,
    uuid5,
)

BASE = {
    "source": "shop",
    "table": "public.orders",
    "lsn": 100,
    "op": "u",
    "key": '{"id":1}',
    "sequence": 0,
    "event_type": "OrderStatusChanged",
}


def _id(**changes: Any) -> str:
    return event_id(**{**BASE, **changes})


def _event(name: str, version: int, payload: Payload, **changes: Any) -> DomainEvent:
    fields: dict[str, Any] = {
        "event_id": "e-1",
        "event_type": name,
        "version": version,
        "aggregate_type": "order",
        "aggregate_id": "1",
        "occurred_at_ms": 1_700_000_000_000,
        "source": "shop",
        "table": "public.orders",
        "op": "c",
        "lsn": 10,
        "txid": 5,
        "sequence": 0,
        "correlation_id": "c-1",
        "payload": payload,
    }
    return DomainEvent(**{**fields, **changes})


# ---------------------------------------------------------------- ids


def test_event_id_is_deterministic_and_a_uuid() -> None:
    assert _id() == _id()
    assert uuid.UUID(_id()).version == 5


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("source", "other"),
        ("table", "public.customers"),
        ("lsn", 101),
        ("op", "c"),
        ("key", '{"id":2}'),
        ("sequence", 1),
        ("event_type", "OrderDelivered"),
    ],
)
def test_event_id_differs_when_any_part_of_the_position_differs(field: str, other: Any) -> None:
    assert _id(**{field: other}) != _id()


# Ids stored before the fast path must keep matching: the known id pins the namespace and the format.
KNOWN_ID = "ca3cdd13-55ec-580d-b0db-230a06702b6b"  # computed with uuid.uuid5 before the fast path


@pytest.mark.parametrize("name", ["", 'shop|public.orders|100|u|{"id":1}|0|OrderPlaced', "ünï|cödé|\u2603", "x" * 5000])
def test_uuid5_is_the_standard_uuid5_in_the_event_namespace(name: str) -> None:
    namespace = uuid.UUID("5b3f5f0e-3c7b-4c43-9a47-0d7d1c0c2a11")
    assert uuid5(name) == str(uuid.uuid5(namespace, name))


def test_event_id_of_a_known_position_never_changes() -> None:
    assert event_id("shop", "public.orders", 100, "u", '{"id":1}', 0, "OrderPlaced") == KNOWN_ID


def test_event_ids_of_many_positions_are_all_distinct() -> None:
    ids = {
        _id(lsn=lsn, op=op, sequence=seq, key=f'{{"id":{k}}}')
        for lsn, op, seq, k in itertools.product(range(20), "rcud", range(3), range(5))
    }
    assert len(ids) == 20 * 4 * 3 * 5


def test_correlation_id_is_shared_within_a_transaction() -> None:
    assert correlation_id("shop", 741, 100) == correlation_id("shop", 741, 999)
    assert correlation_id("shop", 741, 100) != correlation_id("shop", 742, 100)
    assert correlation_id("shop", 741, 100) != correlation_id("other", 741, 100)


def test_correlation_id_falls_back_to_the_lsn_without_a_txid() -> None:
    assert correlation_id("shop", None, 100) == correlation_id("shop", None, 100)
    assert correlation_id("shop", None, 100) != correlation_id("shop", None, 101)
    assert correlation_id("shop", None, 100) != correlation_id("shop", 100, 100)


def test_domain_event_topic_and_time() -> None:
    e = _event("OrderPlaced", 1, {})
    assert e.topic == "events.order"
    assert e.occurred_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)


# ---------------------------------------------------------------- declarations


def test_registry_rejects_a_version_declared_twice() -> None:
    with collecting(EventRegistry()) as registry:

        @event("Thing", aggregate="thing", key="id")
        @dataclass(frozen=True)
        class ThingV1:
            id: int

        with pytest.raises(EventDefinitionError, match="declared twice"):

            @event("Thing", aggregate="thing", key="id")
            @dataclass(frozen=True)
            class ThingAgain:
                id: int

    assert [s.payload_class for s in registry.versions("Thing")] == [ThingV1]


@pytest.mark.parametrize("version", [0, -1])
def test_registry_rejects_version_below_one(version: int) -> None:
    registry = EventRegistry()
    with pytest.raises(EventDefinitionError, match="version must be >= 1"):
        registry.add_event(EventSpec("Thing", version, "thing", "id", None))
    assert registry.names() == []


def test_event_key_must_be_a_field() -> None:
    with collecting(EventRegistry()) as registry, pytest.raises(EventDefinitionError, match="key field 'thing_id'"):

        @event("Thing", aggregate="thing", key="thing_id")
        @dataclass(frozen=True)
        class Thing:
            id: int

    assert registry.names() == []


def test_event_must_be_a_dataclass() -> None:
    with collecting(EventRegistry()), pytest.raises(EventDefinitionError, match="must be a dataclass"):

        @event("Thing", aggregate="thing", key="id")
        class Thing:
            id: int


def test_every_version_belongs_to_one_aggregate() -> None:
    registry = EventRegistry()
    registry.add_event(EventSpec("Thing", 1, "thing", "id", None))
    with pytest.raises(EventDefinitionError, match="aggregate 'thing'"):
        registry.add_event(EventSpec("Thing", 2, "other", "id", None))


def test_two_upcasters_from_one_version_are_refused() -> None:
    registry = EventRegistry()
    registry.add_upcaster("Thing", 1, dict)
    with pytest.raises(EventDefinitionError, match="two upcasters from v1"):
        registry.add_upcaster("Thing", 1, dict)


def test_check_chains_names_each_gap() -> None:
    registry = EventRegistry()
    for v in (1, 2, 3):
        registry.add_event(EventSpec("Thing", v, "thing", "id", None))
    registry.add_upcaster("Thing", 1, dict)
    assert registry.check_chains() == [
        "Thing v1 cannot be upcast to v3: no upcaster from v2",
        "Thing v2 cannot be upcast to v3: no upcaster from v2",
    ]
    registry.add_upcaster("Thing", 2, dict)
    assert registry.check_chains() == []


GAPPY_MODULE = """
from dataclasses import dataclass
from cdc.domain.events import event, upcaster

@event("Gappy", version=1, aggregate="gap", key="id")
@dataclass(frozen=True)
class GappyV1:
    id: int

@event("Gappy", version=2, aggregate="gap", key="id")
@dataclass(frozen=True)
class GappyV2:
    id: int

@event("Gappy", version=3, aggregate="gap", key="id")
@dataclass(frozen=True)
class GappyV3:
    id: int

@upcaster("Gappy", from_version=2)
def up2(payload):
    return payload
"""


def test_load_modules_refuses_a_module_with_an_upcaster_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gappy_events.py").write_text(GAPPY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "gappy_events", None)  # undo removes the module again
    monkeypatch.delitem(sys.modules, "gappy_events")
    with pytest.raises(EventDefinitionError, match="Gappy v1 cannot be upcast to v3: no upcaster from v1"):
        load_modules(["gappy_events"])
    fixed = GAPPY_MODULE + '\n@upcaster("Gappy", from_version=1)\ndef up1(payload):\n    return payload\n'
    (tmp_path / "gappy_fixed_events.py").write_text(fixed)  # a module runs once per process: fixed = new name
    monkeypatch.setitem(sys.modules, "gappy_fixed_events", None)
    monkeypatch.delitem(sys.modules, "gappy_fixed_events")
    registry = load_modules(["gappy_fixed_events"])
    assert sorted(registry.upcasters("Gappy")) == [1, 2] and registry.modules == ("gappy_fixed_events",)


def test_load_modules_reports_a_missing_module() -> None:
    with pytest.raises(EventDefinitionError, match="cannot import translator module 'no_such_events_module'"):
        load_modules(["no_such_events_module"])


def test_load_modules_gives_each_call_its_own_registry() -> None:
    first, second = load_modules(["cdc.demo.events"]), load_modules(["cdc.demo.events"])
    assert first is not second
    assert [s.version for s in first.versions("OrderPlaced")] == [1, 2]
    assert [s.version for s in second.versions("OrderPlaced")] == [1, 2]
    assert first.spec("OrderPlaced", 2) == second.spec("OrderPlaced", 2)  # same classes: both still translate


# ---------------------------------------------------------------- upcasting on read


def _chain_registry(calls: list[str]) -> EventRegistry:
    registry = EventRegistry()
    with collecting(registry):
        for v in (1, 2, 3):
            registry.add_event(EventSpec("Renamed", v, "thing", "id", None))

        @upcaster("Renamed", from_version=1)
        def v1_v2(p: Payload) -> Payload:
            calls.append("1->2")
            p["name"] = p.pop("title")
            return p

        @upcaster("Renamed", from_version=2)
        def v2_v3(p: Payload) -> Payload:
            calls.append("2->3")
            return {**p, "display": p["name"].upper()}  # needs v1->v2 to have run first

    return registry


def test_upcast_applies_each_step_in_order_on_read() -> None:
    calls: list[str] = []
    stored = _event("Renamed", 1, {"id": 1, "title": "margherita"})
    read = _chain_registry(calls).upcast(stored)
    assert calls == ["1->2", "2->3"]
    assert (read.version, dict(read.payload)) == (3, {"id": 1, "name": "margherita", "display": "MARGHERITA"})
    assert read.event_id == stored.event_id and read.lsn == stored.lsn


def test_upcast_leaves_the_stored_event_unchanged() -> None:
    payload = {"id": 1, "title": "margherita"}
    stored = _event("Renamed", 1, payload)
    _chain_registry([]).upcast(stored)
    assert stored.version == 1
    assert payload == {"id": 1, "title": "margherita"} and stored.payload is payload


def test_upcast_starts_from_the_stored_version() -> None:
    calls: list[str] = []
    read = _chain_registry(calls).upcast(_event("Renamed", 2, {"id": 1, "name": "funghi"}))
    assert calls == ["2->3"] and read.payload["display"] == "FUNGHI"


def test_latest_version_and_unknown_types_pass_as_they_are() -> None:
    calls: list[str] = []
    registry = _chain_registry(calls)
    latest = _event("Renamed", 3, {"id": 1, "name": "x", "display": "X"})
    unknown = _event("SomethingElse", 1, {"id": 1})
    generic = _event("OrderItemCreated", 1, {"order_id": 1})
    assert registry.upcast(latest) is latest
    assert registry.upcast(unknown) is unknown
    assert registry.upcast(generic) is generic
    assert calls == []


def test_upcast_without_a_step_raises() -> None:
    registry = EventRegistry()
    registry.add_event(EventSpec("Thing", 1, "thing", "id", None))
    registry.add_event(EventSpec("Thing", 2, "thing", "id", None))
    with pytest.raises(EventDefinitionError, match="no upcaster from v1 to v2"):
        registry.upcast(_event("Thing", 1, {"id": 1}))


# ---------------------------------------------------------------- JSON values


def test_to_json_value_decimal_is_exact() -> None:
    assert to_json_value(Decimal("12345678901234567890.01")) == "12345678901234567890.01"
    assert to_json_value(Decimal("0.10")) == "0.10"


def test_to_json_value_dates_and_times_are_iso() -> None:
    assert to_json_value(dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)) == "2024-05-06T07:08:09.123456+00:00"
    assert to_json_value(dt.datetime(2024, 5, 6, 7, 8, 9)) == "2024-05-06T07:08:09"
    assert to_json_value(dt.date(1999, 12, 31)) == "1999-12-31"
    assert to_json_value(dt.time(23, 59, 1)) == "23:59:01"


@pytest.mark.parametrize(
    ("value", "expected"), [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"), (1.5, 1.5), (0.0, 0.0)]
)
def test_to_json_value_floats(value: float, expected: Any) -> None:
    assert to_json_value(value) == expected


def test_to_json_value_nested_and_other_types() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = {
        "a": [Decimal("1.5"), (dt.date(2020, 1, 2), math.nan)],
        3: {"b": b"\x00\xff", "u": u, "n": None},
        "ok": True,
        "s": "text",
    }
    assert to_json_value(value) == {
        "a": ["1.5", ["2020-01-02", "NaN"]],
        "3": {"b": "00ff", "u": str(u), "n": None},
        "ok": True,
        "s": "text",
    }


def test_payload_dict_of_a_declared_event() -> None:
    @dataclass(frozen=True)
    class Priced:
        id: int
        price: Decimal
        at: dt.datetime
        tags: tuple[str, ...]

    body = payload_dict(Priced(1, Decimal("9.50"), dt.datetime(2024, 1, 1, tzinfo=dt.UTC), ("a", "b")))
    assert body == {"id": 1, "price": "9.50", "at": "2024-01-01T00:00:00+00:00", "tags": ["a", "b"]}


@pytest.mark.parametrize("bad", [{"id": 1}, 42, None])
def test_payload_dict_refuses_what_is_not_a_payload(bad: object) -> None:
    with pytest.raises(EventDefinitionError, match="is not an event payload"):
        payload_dict(bad)


def test_payload_dict_refuses_a_dataclass_type() -> None:
    @dataclass
    class Thing:
        id: int

    with pytest.raises(EventDefinitionError):
        payload_dict(Thing)
