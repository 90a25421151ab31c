"""Column rules (exclude, mask) as the mirror sees the source catalog."""

from __future__ import annotations

from dataclasses import replace

from cdc.debezium.config import REDACTED_LENGTH
from cdc.domain.changes import TableRef, TableSchema
from cdc.errors import ConfigError
from cdc.mirror.copy_sql import copyable, pg_ident, pg_literal
from cdc.ports import Catalog
from cdc.settings import SourceSpec

MASKABLE_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})  # Debezium masks character columns


class ColumnRules:
    """The source's catalog as the bridge sees it: excluded columns are not there.

    The mirror sink reads table schemas through this, so a table created or altered later is
    laid out by the same rules.
    """

    def __init__(self, catalog: Catalog, spec: SourceSpec) -> None:
        self._catalog = catalog
        self._spec = spec

    def table_schema(self, ref: TableRef) -> TableSchema | None:
        schema = self._catalog.table_schema(ref)
        return None if schema is None else self.apply(schema)

    def apply(self, schema: TableSchema) -> TableSchema:
        ref = schema.ref
        dropped = {c.name for c in schema.columns if self._spec.excluded_column(ref.schema, ref.table, c.name)}
        if not dropped:
            return schema
        return replace(schema, columns=tuple(c for c in schema.columns if c.name not in dropped))

    def copy_refusal(self, schema: TableSchema) -> str | None:
        """Why the copy path (initial load, resync, added tables) must not read ``schema`` (None: it may).
        Masks are applied inside Debezium: a copy would bring the clear values into ClickHouse."""
        why = copyable(schema)
        if why:
            return why
        prefix = f"{schema.ref.schema}.{schema.ref.table}."
        masked = sorted(r.column.removeprefix(prefix) for r in self._spec.mask if r.column.startswith(prefix))
        if masked:
            return f"column(s) {', '.join(masked)} are masked, and only Debezium applies masks"
        return None

    def masks(self, schema: TableSchema, salt: str) -> dict[str, str]:
        """Masked column -> a PostgreSQL expression of the value Debezium sends for it, for comparing a copy
        with the mirror (``cdc verify``): ``hash`` is Debezium's ``column.mask.hash.v2.SHA-256``, the lowercase
        hex SHA-256 of the salt's bytes then the text's (NULL stays NULL); ``redact`` is ``REDACTED_LENGTH``
        asterisks, NULL or not. The clear values never leave PostgreSQL."""
        prefix = f"{schema.ref.schema}.{schema.ref.table}."
        out = {}
        for rule in self._spec.mask:
            if not rule.column.startswith(prefix):
                continue
            name = rule.column.removeprefix(prefix)
            if rule.method == "hash":
                text = f"{pg_literal(salt)} || {pg_ident(name)}::text"
                out[name] = f"encode(sha256(convert_to({text}, 'UTF8')), 'hex')"
            else:
                out[name] = pg_literal("*" * REDACTED_LENGTH)
        return out

    def check(self, schemas: list[TableSchema]) -> None:
        """Every excluded or masked column must exist, be maskable, and not identify rows."""
        by_name = {s.ref.qualified: s for s in schemas}
        rules = [(c, "excluded") for c in self._spec.exclude_columns] + [(r.column, "masked") for r in self._spec.mask]
        for column, what in rules:
            table, name = column.rsplit(".", 1)
            schema = by_name.get(table)
            if schema is None:
                continue  # a rule for a table not captured (or left out): nothing to do
            col = schema.column_index.get(name)
            if col is None:
                raise ConfigError(f"{what} column {column} does not exist in {table}")
            if name in schema.key:
                raise ConfigError(
                    f"{what} column {column} identifies the rows of {table} (it is part of its key); "
                    "the mirror needs it as is. Mask or exclude other columns only"
                )
            if what == "masked" and (col.pg_type not in MASKABLE_TYPES or col.is_array):
                raise ConfigError(
                    f"masked column {column} is {col.pg_type}{'[]' if col.is_array else ''}; "
                    "Debezium masks character columns only: exclude it instead "
                    "(exclude_columns)"
                )
