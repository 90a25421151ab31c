"""The embedded broker as a bounded buffer: its topics are emptied while changes stream, and nothing
is lost or doubled in the mirror, the change log or the event store (issue 11, part 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.e2e.conftest import BridgeProcess, SourceLoad, sql, status_json
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


class Writer(SourceLoad):
    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.changes = 0

    def step(self, conn: Any) -> None:
        conn.execute("INSERT INTO readings (sensor, value) SELECT g % 7, g * 0.5 FROM generate_series(1, 40) g")
        cur = conn.execute("UPDATE balances SET amount = amount + 1 WHERE id IN (SELECT (random() * 49)::int + 1)")
        self.changes += 40 + cur.rowcount


def _rounds(state_dir: Path) -> int:
    sources = status_json(state_dir).get("sources") or [{}]
    return int(sources[0].get("broker_truncations") or 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_broker_topics_are_emptied_while_streaming_and_nothing_is_lost(
    database: str, state_dir: Path, bridges: list[BridgeProcess], workers: int
) -> None:
    """With two events workers, each change topic has two partitions and the consumer group splits
    them: both partitions are read, re-created with two partitions by every round, and the events
    are still stored once each."""
    sql(database, "CREATE TABLE readings (id bigserial PRIMARY KEY, sensor int NOT NULL, value numeric(12,2))")
    sql(database, "CREATE TABLE balances (id int PRIMARY KEY, amount bigint NOT NULL)")
    sql(database, "INSERT INTO balances SELECT g, 0 FROM generate_series(1, 50) g")
    db = database.rsplit("/", 1)[1]
    bridge = BridgeProcess(
        state_dir,
        ["run", "--source", database],
        env={"CDC_GUARDRAILS__BROKER_BUFFER_RECORDS": "3000", "CDC_EVENTS_WORKERS": str(workers)},
    )
    bridges.append(bridge)
    ch = bridge.clickhouse()
    bridge.wait_for_line(r"Mirrored tables")
    writer = Writer(database)
    writer.start()
    wait_until(
        lambda: (status_json(state_dir).get("sources") or [{}])[0].get("broker_truncations", 0) >= 3, 180, "3 rounds"
    )
    writer.stop()

    def same() -> bool:
        pg = sql(database, "SELECT count(*), sum(value), (SELECT sum(amount) FROM balances) FROM readings")
        got = ch.query(f"SELECT count(), sum(value), (SELECT sum(amount) FROM {db}.balances) FROM {db}.readings")
        return [tuple(str(v) for v in r) for r in got.result_rows] == [tuple(str(v) for v in r) for r in pg]

    wait_until(same, 180, "ClickHouse equal to PostgreSQL")
    inserted = sql(database, "SELECT count(*) FROM readings")[0][0]
    updates = sql(database, "SELECT sum(amount) FROM balances")[0][0]
    # every change once in the change logs, and once as a domain event
    log = ch.query(f"SELECT count() FROM {db}.readings_changes WHERE _op = 'c'").result_rows[0][0]
    assert log == inserted
    assert ch.query(f"SELECT count() FROM {db}.balances_changes WHERE _op = 'u'").result_rows[0][0] == updates
    events = f"FROM events.domain_events FINAL WHERE source = '{db}'"
    expected = {"ReadingCreated": inserted, "BalanceUpdated": int(updates), "BalanceCreated": 50}  # 50 in the snapshot

    def stored() -> dict[str, int]:
        return {str(t): int(n) for t, n in ch.query(f"SELECT event_type, count() {events} GROUP BY 1").result_rows}

    wait_until(lambda: stored() == expected, 180, f"every event stored once: {expected}")
    assert ch.query(f"SELECT count() - uniqExact(event_id) {events}").result_rows == [(0,)]
    # the gate releases what the lanes committed on Debezium's next batch (a heartbeat a second), and
    # the status file is rewritten every few seconds: nothing stays in flight once the lanes are done
    wait_until(lambda: status_json(state_dir)["sources"][0]["in_flight"] == 0, 60, "nothing in flight")
    assert status_json(state_dir)["sources"][0]["broker_truncations"] >= 3
    if workers > 1:  # after the rounds: the topics came back with two partitions, each read by the group
        sql(database, "INSERT INTO readings (sensor, value) SELECT g % 7, g FROM generate_series(1, 200) g")
        wait_until(lambda: stored().get("ReadingCreated") == inserted + 200, 120, "200 more readings as events")
        _assert_both_partitions_read(bridge, db)
    assert bridge.stop() == 0
    assert "Traceback" not in bridge.output()


def _assert_both_partitions_read(bridge: BridgeProcess, db: str) -> None:
    bootstrap = bridge.wait_for_line(r"Kafka bootstrap:\s+(\S+)").group(1)
    topic = f"{db}.public.readings"
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"cdc-events-{db}", enable_auto_commit=False)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1}
        committed = {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in (0, 1)}
    finally:
        consumer.close(autocommit=False)
    assert all(offset > 0 for offset in committed.values()), committed  # each partition had changes
