"""Which of a source's tables the bridge captures, and what it says about the others (part of
:class:`~cdc.capture.SourceCapture`'s start)."""

from __future__ import annotations

from collections.abc import Callable

from cdc.domain.changes import TableSchema
from cdc.domain.names import parse_table
from cdc.errors import ConfigError
from cdc.mirror.placeholders import toast_warnings
from cdc.mirror.rules import ColumnRules
from cdc.mirror.table import unmirrorable
from cdc.ports import SourceDatabase
from cdc.settings import SourceSpec


def choose_tables(
    spec: SourceSpec, source: SourceDatabase, rules: ColumnRules, name: str, say: Callable[[str], None]
) -> list[TableSchema]:
    """The tables to capture, laid out by the column rules. A table that cannot be captured is left out
    with a warning naming it and the reason; the others run. Raises ConfigError when none is left."""
    schemas, excluded = source.select_tables(spec.tables or None, name)
    for ex in excluded:
        say(f"warning: {ex.reason}")
    try:
        skip = {parse_table(t) for t in spec.exclude_tables}
    except ValueError as e:
        raise ConfigError(f"exclude_tables: {e}") from e
    schemas = [s for s in schemas if (s.ref.schema, s.ref.table) not in skip]
    if not schemas:
        raise ConfigError(f"nothing to capture in {source.where}: no table with a usable key")
    rules.check(schemas)
    chosen = []
    for schema in map(rules.apply, schemas):
        why = unmirrorable(schema)
        if why:
            say(f"warning: {schema.ref.display} is left out: {why}")
        else:
            chosen.append(schema)
    if not chosen:
        raise ConfigError(f"nothing to capture in {source.where}: every table was left out (see the warnings)")
    for warning in toast_warnings(chosen):
        say(f"warning: {warning}")
    return chosen
