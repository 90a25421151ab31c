"""Asset keys: ``postgres/<source>/<table>``, ``kafka/<topic>``, ``clickhouse/<source>/<table>``,
``events/domain_events`` and ``reports/<name>``, each part reduced to what Dagster accepts in every name
derived from a key (letters, digits, ``_``); the real names are in each asset's metadata."""

import re

from dagster import AssetKey

from dagster_project.tables import CapturedTable
from pipelines.projection import Projection

EVENTS_KEY = AssetKey(["events", "domain_events"])


def _part(name: str) -> str:
    """A name as a key component Dagster accepts everywhere (check inputs too): letters, digits and ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def postgres_key(t: CapturedTable) -> AssetKey:
    return AssetKey(["postgres", _part(t.source), _part(t.name)])


def topic_key(t: CapturedTable) -> AssetKey:
    return AssetKey(["kafka", ".".join(_part(p) for p in (t.source, t.schema, t.table))])


def mirror_key(t: CapturedTable) -> AssetKey:
    return AssetKey(["clickhouse", _part(t.source), _part(t.name)])


def projection_key(p: Projection) -> AssetKey:
    return AssetKey(["reports", p.name])


def table_key(qualified: str) -> AssetKey:
    """``<source>.<table>`` (a mirror view a projection reads) as the mirror's asset key."""
    database, _, name = qualified.partition(".")
    return AssetKey(["clickhouse", _part(database), _part(name)])
