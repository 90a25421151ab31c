"""The captured tables the Dagster project knows: what the bridge records, and what the configuration names.

The bridge writes every table it captures to ``cdc.captured_tables`` (:mod:`cdc.mirror.captured`),
with the source's primary key: the uniqueness check holds the mirror to the source's identity, not
to its own. Tables a ``cdc.toml`` ``[[source]]`` lists by name but no bridge has captured yet are
added without a key, so their checks say "not mirrored yet" instead of the table missing from the graph.
Reading the record needs ClickHouse; when it cannot be reached the graph has the configured tables
only, and a warning says so (reload the code location once the bridge runs).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from cdc import settings as config
from cdc.domain.events import EventDefinitionError, EventRegistry, load_modules
from cdc.errors import CdcError, ConfigError
from cdc.mirror.captured import CapturedTable, read
from cdc.ports import Warehouse

log = logging.getLogger(__name__)

__all__ = ["CapturedTable", "captured_tables", "configured_tables", "load_registry", "translator_modules"]


def captured_tables(
    warehouse: Callable[[], AbstractContextManager[Warehouse]] | None, configured: Sequence[CapturedTable] = ()
) -> list[CapturedTable]:
    """The recorded tables (read through a connection ``warehouse`` opens, if given), then the configured
    ones not recorded."""
    recorded: list[CapturedTable] = []
    if warehouse is not None:
        try:
            with warehouse() as wh:
                recorded = read(wh)
        except CdcError as e:
            log.warning("cannot read the captured tables from ClickHouse (%s); the graph shows configured ones", e)
    have = {(t.source, t.schema, t.table) for t in recorded}
    return recorded + [t for t in configured if (t.source, t.schema, t.table) not in have]


def configured_tables(settings: config.Settings) -> list[CapturedTable]:
    """The tables each named ``[[source]]`` of the configuration lists (``--tables`` for a named source)."""
    found: list[CapturedTable] = []
    named = [(s.name, s.tables, s.dsn_env) for s in settings.source if s.name]
    if not settings.source and settings.source_name:
        named.append((settings.source_name, settings.tables, ""))
    for name, tables, dsn_env in named:
        for qualified in tables:
            schema, _, table = qualified.rpartition(".")
            found.append(CapturedTable(name, schema or "public", table, (), dsn_env=dsn_env))
    return found


def translator_modules(tables: Sequence[CapturedTable]) -> tuple[str, ...]:
    """Every translator module the sources with domain events use, once each."""
    return tuple(dict.fromkeys(m for t in tables if t.events for m in t.translators))


@functools.cache
def load_registry(modules: tuple[str, ...]) -> EventRegistry:
    """The events, versions and upcasters the translator ``modules`` declare (loaded once per process)."""
    try:
        return load_modules(modules)
    except (EventDefinitionError, ImportError) as e:
        raise ConfigError(
            f"cannot load the translator modules {', '.join(modules)} in the Dagster processes ({e}); "
            "install them where Dagster runs"
        ) from e
