"""What the ClickHouse tables of one captured table hold, and the schema changes noticed. Pure."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cdc.domain.changes import Column, TableSchema
from cdc.mirror.typemap import clickhouse_element_type, is_raw

_ANY = '"nft[{-0123456789NI'
_NUMBER = "-0123456789"
_NUMERIC_ELEMENTS = {"Int16", "Int32", "Int64", "UInt32", "Float32", "Float64", "Date32"}


@dataclass(frozen=True, slots=True)
class SchemaNotice:
    """A schema change the mirror detected and how it handled it (shown by `cdc status` and /metrics)."""

    table: str  # <source>.<schema>.<table>
    kind: str  # added, dropped, renamed, type_widened, type_changed, now_nullable, key_changed, unknown_column
    column: str
    detail: str
    first_seen_lsn: int | None = None
    first_seen_at: float = 0.0  # epoch seconds


@dataclass(frozen=True, slots=True)
class MirrorModel:
    """Every column the ClickHouse tables of one captured table hold, in order, and their fate."""

    columns: tuple[Column, ...]
    key: tuple[str, ...]
    dropped: frozenset[str] = frozenset()
    as_text: frozenset[str] = frozenset()  # kept as text since an incompatible type change
    nullable: frozenset[str] = frozenset()  # Nullable in the state table although the source says NOT NULL
    shapes: tuple[tuple[str, ...], ...] = ()  # older column lists still accepted (changes from before an ALTER)
    index: Mapping[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {c.name: c for c in self.columns})

    @classmethod
    def of(cls, schema: TableSchema) -> MirrorModel:
        return cls(schema.columns, schema.key)

    @property
    def live(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.name not in self.dropped)

    def accepted_shapes(self) -> tuple[tuple[str, ...], ...]:
        return (self.live, *(s for s in self.shapes if s != self.live))

    def state_nullable(self, name: str) -> bool:
        return self.index[name].nullable or name in self.nullable or name in self.dropped

    def kinds(self, name: str) -> str:
        """First characters the JSON value of column ``name`` may start with."""
        col = self.index[name]
        if name in self.as_text or is_raw(col):
            return _ANY
        null = "n" if self.state_nullable(name) and name not in self.key else ""
        if col.is_array:
            return "[" + null
        element = clickhouse_element_type(col)
        if element == "Bool":
            return "tf" + null
        if element in _NUMERIC_ELEMENTS:
            # floats: Debezium writes NaN/Infinity as strings
            return _NUMBER + ('"NI' if element.startswith("Float") else "") + null
        return '"' + null

    def to_json(self) -> str:
        return json.dumps(
            {
                "columns": [dataclasses.asdict(c) for c in self.columns],  # Column(**doc) reads it back
                "key": list(self.key),
                "dropped": sorted(self.dropped),
                "as_text": sorted(self.as_text),
                "nullable": sorted(self.nullable),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> MirrorModel:
        doc = json.loads(text)
        return cls(
            tuple(Column(**c) for c in doc["columns"]),
            tuple(doc["key"]),
            frozenset(doc["dropped"]),
            frozenset(doc["as_text"]),
            frozenset(doc["nullable"]),
        )
