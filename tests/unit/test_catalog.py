from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Optional

import pytest

from cdc.domain.catalog import DRAFT, GENERIC_NOTE, build_catalog, json_schema, render_markdown
from cdc.domain.compat import Finding, check, load_snapshot, merge_snapshot, write_snapshot
from cdc.domain.events import EventDefinitionError, EventRegistry, EventSpec, collecting, event, upcaster

UPDATE = "record it with `cdc events check --update`"


# -- payload classes (module level, so get_type_hints can resolve their annotations) ---------------
@dataclass(frozen=True)
class Line:
    sku: str
    qty: int


@dataclass(frozen=True)
class Everything:
    """Every supported field type.

    Second paragraph, not part of the description.
    """

    s: str
    i: int
    f: float
    b: bool
    d: Decimal
    ts: dt.datetime
    day: dt.date
    at: dt.time
    u: uuid.UUID
    tags: list[str]
    many: tuple[int, ...]
    pair: tuple[str, int]
    labels: frozenset[str]
    counts: dict[str, int]
    anything: Any
    obj: object
    status: Literal["new", "paid"]
    line: Line
    lines: list[Line]
    maybe: int | None = None
    legacy: Optional[str] = None  # noqa: UP045 - the old spelling must work too
    extra: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Undocumented:
    x: int


@dataclass(frozen=True)
class HasBytes:
    blob: bytes


@dataclass(frozen=True)
class IntKeys:
    by_id: dict[int, str]


@dataclass(frozen=True)
class Blobby:
    blob: bytes


@dataclass(frozen=True)
class NestedBytes:
    items: list[Blobby]


@dataclass(frozen=True)
class Loop:
    next: Loop | None


@dataclass(frozen=True)
class PlacedV1:
    order_id: str
    amount: Decimal


@dataclass(frozen=True)
class PlacedV1Added:
    order_id: str
    amount: Decimal
    note: str | None = None


@dataclass(frozen=True)
class PlacedV1Removed:
    order_id: str


@dataclass(frozen=True)
class PlacedV1Retyped:
    order_id: str
    amount: float


@dataclass(frozen=True)
class PlacedV2:
    order_id: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Shipped:
    order_id: str
    carrier: str | None


def orders(
    *decls: tuple[type, int],
    upcasts: Iterable[int] = (),
    aggregate: str = "order",
    key: str = "order_id",
    description: str = "An order was placed.",
) -> EventRegistry:
    """A registry with ``OrderPlaced`` declared as ``(class, version)`` pairs, plus upcasters."""
    reg = EventRegistry()
    with collecting(reg):
        for cls, version in decls:
            event(
                "OrderPlaced",
                version=version,
                aggregate=aggregate,
                key=key,
                tables=["public.orders"],
                description=description,
            )(cls)
        for from_version in upcasts:
            upcaster("OrderPlaced", from_version=from_version)(lambda p: {**p, "currency": "EUR"})
    return reg


def catalog_of(*decls: tuple[type, int], upcasts: Iterable[int] = (), **kw: Any) -> dict[str, Any]:
    return build_catalog(orders(*decls, upcasts=upcasts, **kw))


# -- JSON Schema -----------------------------------------------------------------------------------
LINE = {
    "type": "object",
    "title": "Line",
    "properties": {"qty": {"type": "integer"}, "sku": {"type": "string"}},
    "required": ["qty", "sku"],
    "additionalProperties": False,
}


def test_schema_of_every_supported_type() -> None:
    assert json_schema(Everything) == {
        "$schema": DRAFT,
        "type": "object",
        "title": "Everything",
        "description": "Every supported field type.",
        "additionalProperties": False,
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "f": {"type": "number"},
            "b": {"type": "boolean"},
            "d": {"type": "string", "format": "decimal"},
            "ts": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "time"},
            "u": {"type": "string", "format": "uuid"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "many": {"type": "array", "items": {"type": "integer"}},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "items": False,
                "minItems": 2,
            },
            "labels": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "anything": {},
            "obj": {},
            "status": {"enum": ["new", "paid"]},
            "line": LINE,
            "lines": {"type": "array", "items": LINE},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "legacy": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "extra": {"type": "array", "items": {"type": "string"}},
        },
        "required": [
            "anything",
            "at",
            "b",
            "counts",
            "d",
            "day",
            "f",
            "i",
            "labels",
            "line",
            "lines",
            "many",
            "obj",
            "pair",
            "s",
            "status",
            "tags",
            "ts",
            "u",
        ],
    }


def test_title_and_description_come_from_the_spec() -> None:
    spec = EventSpec("OrderPlaced", 1, "order", "order_id", PlacedV1, description="An order was placed.")
    schema = json_schema(PlacedV1, spec)
    assert (schema["title"], schema["description"]) == ("OrderPlaced", "An order was placed.")
    assert json_schema(Undocumented)["description"] == ""  # not the signature dataclass invents as __doc__


@pytest.mark.parametrize(
    ("cls", "words"),
    [
        (HasBytes, "event field HasBytes.blob has unsupported type bytes: use "),
        (IntKeys, "event field IntKeys.by_id has unsupported type dict[int, str]: use "),
        (NestedBytes, "event field NestedBytes.items[].blob has unsupported type bytes: use "),
        (Loop, "event field Loop.next: Loop contains itself"),
    ],
)
def test_unsupported_types_are_refused_naming_the_field(cls: type, words: str) -> None:
    with pytest.raises(EventDefinitionError) as caught:
        json_schema(cls)
    assert str(caught.value).startswith(words)


def test_unresolvable_annotation_is_refused() -> None:
    @dataclass
    class Inner:
        x: int

    @dataclass
    class Local:
        line: Line
        inner: Inner  # a local class: get_type_hints cannot find it in the module

    with pytest.raises(EventDefinitionError, match=r"Local.*cannot resolve the annotations of Local"):
        json_schema(Local)


# -- the catalog -----------------------------------------------------------------------------------
def test_catalog_entry_is_exact_and_deterministic() -> None:
    reg = orders((PlacedV1, 1), (PlacedV2, 2), upcasts=[1])
    reg.add_translator("orders", lambda change: [])
    cat = build_catalog(reg)
    assert cat == build_catalog(reg)
    assert json.loads(json.dumps(cat)) == cat
    assert cat["catalog_version"] == 1 and cat["translators"] == ["public.orders"]
    assert cat["generic_events"] == GENERIC_NOTE
    entry = cat["events"]["OrderPlaced"]
    assert {k: v for k, v in entry.items() if k != "versions"} == {
        "aggregate": "order",
        "origin": "derived",
        "key": "order_id",
        "latest": 2,
        "upcasters": ["v1→v2"],
    }
    assert list(entry["versions"]) == ["1", "2"]
    v2 = entry["versions"]["2"]
    assert v2["fields"] == {"amount": "decimal", "currency": "string", "order_id": "string"}
    assert (v2["tables"], v2["description"]) == (["public.orders"], "An order was placed.")
    assert v2["schema"] == json_schema(PlacedV2, reg.spec("OrderPlaced", 2))


def test_field_type_labels() -> None:
    reg = EventRegistry()
    reg.add_event(EventSpec("Everything", 1, "thing", "s", Everything))
    reg.add_event(EventSpec("RowChanged", 1, "row", "id", None, ("public.rows",)))
    cat = build_catalog(reg)
    assert cat["events"]["Everything"]["versions"]["1"]["fields"] == {
        "anything": "any",
        "at": "time",
        "b": "boolean",
        "counts": "map<string, integer>",
        "d": "decimal",
        "day": "date",
        "extra": "array<string>",
        "f": "number",
        "i": "integer",
        "labels": "set<string>",
        "legacy": "string | null",
        "line": "Line",
        "lines": "array<Line>",
        "many": "array<integer>",
        "maybe": "integer | null",
        "obj": "any",
        "pair": "tuple<string, integer>",
        "s": "string",
        "status": 'enum("new", "paid")',
        "tags": "array<string>",
        "ts": "date-time",
        "u": "uuid",
    }
    assert cat["events"]["RowChanged"]["versions"]["1"]["fields"] == {}


def test_markdown_mentions_every_type_version_and_field() -> None:
    reg = orders((PlacedV1, 1), (PlacedV2, 2), upcasts=[1])
    reg.add_event(EventSpec("OrderShipped", 1, "order", "order_id", Shipped, ("public.shipments",)))
    page = render_markdown(build_catalog(reg))
    for text in (
        "## OrderPlaced",
        "## OrderShipped",
        "### OrderPlaced v1",
        "### OrderPlaced v2",
        "### OrderShipped v1",
        "- Aggregate: `order` (topic `events.order`)",
        "- Key: `order_id`",
        "- Source tables: `public.orders`",
        "- Latest version: 2",
        "- Upcasters: v1→v2",
        "| `currency` | string | yes |",
        "| `amount` | decimal | yes |",
        "| `carrier` | string \\| null | yes |",
        "## Generic events",
        GENERIC_NOTE,
    ):
        assert text in page, text
    assert page.index("### OrderPlaced v2") < page.index("### OrderPlaced v1")  # latest first


# -- governance ------------------------------------------------------------------------------------
def test_identical_catalogs_pass() -> None:
    cat = catalog_of((PlacedV1, 1), (PlacedV2, 2), upcasts=[1])
    assert check(cat, json.loads(json.dumps(cat))) == []


@pytest.mark.parametrize(
    ("changed", "diff"),
    [
        (PlacedV1Added, "added note"),
        (PlacedV1Removed, "removed amount"),
        (PlacedV1Retyped, "changed amount (decimal → number)"),
    ],
)
def test_fields_changed_without_version_bump_fail(changed: type, diff: str) -> None:
    snapshot = catalog_of((PlacedV1, 1))
    assert check(catalog_of((changed, 1)), snapshot) == [
        Finding(
            "OrderPlaced",
            1,
            "error",
            f"OrderPlaced v1 fields changed without a version bump: {diff} — "
            "declare version 2 with an upcaster from v1, or revert",
        )
    ]


def test_changing_an_old_version_asks_for_a_revert() -> None:
    snapshot = catalog_of((PlacedV1, 1), (PlacedV2, 2), upcasts=[1])
    assert check(catalog_of((PlacedV1Added, 1), (PlacedV2, 2), upcasts=[1]), snapshot) == [
        Finding(
            "OrderPlaced",
            1,
            "error",
            "OrderPlaced v1 fields changed without a version bump: added note — "
            "v1 is not the latest version: restore its recorded shape (stored v1 payloads have it)",
        )
    ]


def test_description_edit_is_not_a_shape_change() -> None:
    snapshot = catalog_of((PlacedV1, 1))
    assert check(catalog_of((PlacedV1, 1), description="Placed."), snapshot) == [
        Finding("OrderPlaced", 1, "info", f"OrderPlaced v1 description or source tables changed; {UPDATE}")
    ]


def test_version_bump_with_upcaster_passes() -> None:
    snapshot = catalog_of((PlacedV1, 1))
    assert check(catalog_of((PlacedV1, 1), (PlacedV2, 2), upcasts=[1]), snapshot) == [
        Finding("OrderPlaced", 2, "info", f"OrderPlaced v2 is a new version; {UPDATE}")
    ]


def test_old_version_may_leave_the_code_while_its_upcaster_stays() -> None:
    snapshot = catalog_of((PlacedV1, 1))
    current = catalog_of((PlacedV2, 2), upcasts=[1])
    assert check(current, snapshot) == [
        Finding(
            "OrderPlaced",
            1,
            "info",
            f"OrderPlaced v1 is no longer declared (its stored payloads still upcast to v2); {UPDATE}",
        ),
        Finding("OrderPlaced", 2, "info", f"OrderPlaced v2 is a new version; {UPDATE}"),
    ]
    assert check(current, merge_snapshot(current, snapshot)) == []  # once recorded, a retired version is quiet


def test_version_bump_without_upcaster_fails() -> None:
    snapshot = catalog_of((PlacedV1, 1))
    assert check(catalog_of((PlacedV1, 1), (PlacedV2, 2)), snapshot) == [
        Finding(
            "OrderPlaced",
            2,
            "error",
            "OrderPlaced v2 has no upcaster from v1: stored older payloads could not be "
            "read as v2 — declare @upcaster('OrderPlaced', from_version=1) for each",
        )
    ]


def test_dropping_a_version_without_its_upcaster_fails() -> None:
    snapshot = catalog_of((PlacedV1, 1), (PlacedV2, 2), upcasts=[1])
    assert check(catalog_of((PlacedV2, 2)), snapshot) == [
        Finding(
            "OrderPlaced",
            1,
            "error",
            "OrderPlaced v1 is no longer declared and there is no upcaster from v1: "
            "stored v1 payloads could no longer be read — restore v1 or its upcasters",
        )
    ]


def test_disappearing_type_fails_and_new_type_is_reported() -> None:
    snapshot = catalog_of((PlacedV1, 1))
    reg = EventRegistry()
    reg.add_event(EventSpec("OrderShipped", 1, "order", "order_id", Shipped))
    assert check(build_catalog(reg), snapshot) == [
        Finding(
            "OrderPlaced",
            None,
            "error",
            "OrderPlaced is recorded (v1) but no longer declared: events already "
            "published would lose their definition — restore its declaration",
        ),
        Finding("OrderShipped", None, "info", f"OrderShipped is a new event type (v1); {UPDATE}"),
    ]


def test_changed_aggregate_or_key_fails() -> None:
    snapshot = catalog_of((PlacedV1, 1))
    assert check(catalog_of((PlacedV1, 1), aggregate="purchase", key="amount"), snapshot) == [
        Finding(
            "OrderPlaced",
            None,
            "error",
            "OrderPlaced aggregate changed from 'order' to 'purchase': published events are in topic "
            "events.order — keep 'order', or declare a new event type",
        ),
        Finding(
            "OrderPlaced",
            None,
            "error",
            "OrderPlaced key changed from 'order_id' to 'amount': published events carry ids taken from "
            "'order_id' — keep 'order_id', or declare a new event type",
        ),
    ]


def test_merge_snapshot_keeps_retired_versions_and_types() -> None:
    snapshot = catalog_of((PlacedV1, 1))
    reg = orders((PlacedV2, 2), upcasts=[1])
    reg.add_event(EventSpec("OrderShipped", 1, "order", "order_id", Shipped))
    current = build_catalog(reg)
    merged = merge_snapshot(current, snapshot)
    placed = merged["events"]["OrderPlaced"]
    assert list(placed["versions"]) == ["1", "2"] and placed["latest"] == 2
    assert placed["versions"]["1"] == {**snapshot["events"]["OrderPlaced"]["versions"]["1"], "retired": True}
    assert placed["versions"]["2"] == current["events"]["OrderPlaced"]["versions"]["2"]
    assert "OrderShipped" in merged["events"] and merge_snapshot(current, None) == current
    gone = merge_snapshot(build_catalog(EventRegistry()), snapshot)["events"]["OrderPlaced"]
    assert gone["versions"]["1"]["retired"] is True  # history survives even a (refused) removal
    assert "retired" not in current["events"]["OrderPlaced"]["versions"]["2"]  # current is not mutated


def test_snapshot_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.catalog.json"
    assert load_snapshot(path) is None
    cat = catalog_of((PlacedV1, 1), (PlacedV2, 2), upcasts=[1])
    write_snapshot(path, cat)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and '"v1→v2"' in text
    assert text == json.dumps(cat, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert load_snapshot(path) == cat
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(EventDefinitionError, match="not valid JSON"):
        load_snapshot(path)
