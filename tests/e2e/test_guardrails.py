"""Slot guardrail: an idle captured database does not make PostgreSQL keep WAL written elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.debezium.config import default_slot_name
from cdc.embedded.pg_cluster import EmbeddedPostgres
from tests.e2e.conftest import BridgeProcess, sql, start_bridge
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

RETAINED = (
    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, "
    "pg_wal_lsn_diff(confirmed_flush_lsn, %s::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = %s"
)


def test_idle_source_lets_its_slot_advance_while_other_databases_write(
    pg: EmbeddedPostgres, database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, "CREATE TABLE quiet (id bigint PRIMARY KEY)")
    db = database.rsplit("/", 1)[1]
    bridge = start_bridge(bridges, state_dir, "--source", database, "--no-events")
    bridge.wait_for_line(r"Mirrored tables:")
    busy = pg.dsn("postgres")
    sql(busy, "CREATE TABLE IF NOT EXISTS busy_elsewhere (id bigserial, pad text)")
    for _ in range(8):  # ~32 MB of WAL in another database; the captured one stays idle
        sql(busy, "INSERT INTO busy_elsewhere (pad) SELECT repeat(md5(g::text), 64) FROM generate_series(1, 2000) g")
    (after_load,) = sql(busy, "SELECT pg_current_wal_lsn()::text")[0]
    slot = default_slot_name(db)

    def advanced() -> bool:
        retained, past_load = sql(busy, RETAINED, (after_load, slot))[0]
        return int(past_load) >= 0 and int(retained) < 16 * 1024 * 1024  # type: ignore[call-overload]

    wait_until(advanced, 90, f"slot {slot} confirmed past the other database's WAL")
    assert bridge.stop() == 0
