"""Deadlines and authored events end to end, on a help desk's schema (tests/e2e/desk_events.py).

The real stack: PostgreSQL, Debezium, Tansu, chDB, the events worker. A ticket not answered within
the promise gets a ``TicketResponseOverdue`` (on an idle source too: heartbeats move the source's
clock), a timely answer cancels it, a late one comes after its alert, replaying the captured
records emits the same alerts, and a deadline open when the bridge is killed fires after it restarts.
The desk's app writes ``TicketEscalated`` itself, through its outbox table and a logical message;
what the catalog does not admit is dead-lettered while the stream goes on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition

from cdc.adapters.postgres import PostgresSource
from cdc.domain.deadlines import DeadlineTracker, alert_id
from cdc.domain.events import DomainEvent, load_modules
from cdc.domain.names import message_topic
from cdc.events.sink import Authoring, DomainEventSink
from cdc.ports import Message, OutRecord
from tests.e2e.conftest import BridgeProcess, cdc_cli, read_to_end, sql
from tests.e2e.desk_events import FIRST_RESPONSE, SCHEMA
from tests.polling import wait_until

MODULE = "tests.e2e.desk_events"
WINDOW_MS = int(FIRST_RESPONSE.total_seconds() * 1000)
ENV = {"CDC_OUTBOX_TABLES": "public.desk_outbox", "CDC_OUTBOX_PREFIX": "desk"}


def _bridge(bridges: list[BridgeProcess], state_dir: Path, dsn: str) -> BridgeProcess:
    bridge = BridgeProcess(state_dir, ["run", "--source", dsn, "--translators", MODULE], env=ENV)
    bridges.append(bridge)
    return bridge


def _open_ticket(dsn: str, customer: str) -> int:
    rows = sql(dsn, "INSERT INTO tickets (customer) VALUES (%s) RETURNING id", (customer,))
    return int(str(rows[0][0]))


def _answer(dsn: str, ticket: int) -> None:
    sql(dsn, "UPDATE tickets SET status = 'answered' WHERE id = %s", (ticket,))


def _events(ch: Any, ticket: int) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in ch.query(
            "SELECT event_type, version, toUnixTimestamp64Milli(occurred_at), toString(event_id), payload_latest, op"
            " FROM events.domain_events FINAL WHERE aggregate_type = 'ticket' AND aggregate_id = {id:String}"
            " ORDER BY occurred_at, lsn, sequence",
            parameters={"id": str(ticket)},
        ).result_rows
    ]


def _of(rows: list[tuple[Any, ...]], kind: str) -> list[tuple[Any, ...]]:
    return [r for r in rows if r[0] == kind]


def _alerts(ch: Any) -> dict[str, int]:
    rows = ch.query(
        "SELECT toString(event_id), toInt64(aggregate_id) FROM events.domain_events FINAL"
        " WHERE event_type = 'TicketResponseOverdue'"
    ).result_rows
    return {r[0]: int(r[1]) for r in rows}


def test_deadlines_fire_on_source_time_replay_the_same_and_survive_a_crash(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, SCHEMA)
    bridge = _bridge(bridges, state_dir, database)
    ch = bridge.clickhouse()
    bootstrap = bridge.wait_for_line(r"Kafka bootstrap:\s+(\S+)").group(1)
    never = _open_ticket(database, "ada")
    timely = _open_ticket(database, "grace")
    time.sleep(1)
    _answer(database, timely)
    late = _open_ticket(database, "linus")
    wait_until(lambda: len(_of(_events(ch, late), "TicketOpened")) == 1, 120, "the late ticket opened")

    # an idle source: only heartbeats move the clock past the never-answered ticket's deadline
    wait_until(lambda: _of(_events(ch, never), "TicketResponseOverdue"), 120, "the overdue alert of an idle ticket")
    opened_at = _of(_events(ch, never), "TicketOpened")[0][2]
    [alert] = _of(_events(ch, never), "TicketResponseOverdue")
    assert alert[2] == opened_at + WINDOW_MS  # at the due time, by the source's commit clock
    assert json.loads(alert[4])["customer"] == "ada" and alert[5] == "deadline"
    assert alert[3] == alert_id("first-response", _of(_events(ch, never), "TicketOpened")[0][3])

    wait_until(lambda: _of(_events(ch, late), "TicketResponseOverdue"), 120, "the late ticket's alert")
    _answer(database, late)  # after its deadline: the alert stays, the answer follows it
    wait_until(lambda: _of(_events(ch, late), "TicketAnswered"), 120, "the late answer")
    late_events = [r[0] for r in _events(ch, late)]
    assert late_events == ["TicketOpened", "TicketResponseOverdue", "TicketAnswered"]
    assert not _of(_events(ch, timely), "TicketResponseOverdue")  # answered in time (the clock is past its due)
    assert set(_alerts(ch).values()) == {never, late}

    # replay: the records captured so far, through fresh sinks in two different batchings
    records = _captured(bootstrap, database.rsplit("/", 1)[1])
    live = set(_alerts(ch))
    assert _replay(records, database, batch=1) == live
    assert _replay(records, database, batch=len(records)) == live

    # a deadline open when the bridge dies (kill -9: its events worker and broker die with it) fires
    # after the restart, once
    pending = _open_ticket(database, "barbara")
    wait_until(lambda: _of(_events(ch, pending), "TicketOpened"), 120, "the pending ticket opened")
    bridge.kill()
    assert not _of(_events_after_stop(state_dir, pending), "TicketResponseOverdue")
    time.sleep(FIRST_RESPONSE.total_seconds())
    again = _bridge(bridges, state_dir, database)
    ch = again.clickhouse()
    wait_until(lambda: _of(_events(ch, pending), "TicketResponseOverdue"), 120, "the restored deadline's alert")
    log = (state_dir / "logs" / "events.log").read_text()
    assert "1 open deadline(s) restored from the event store" in log
    assert len(_alerts(ch)) == 3  # nothing fired twice


def _events_after_stop(state_dir: Path, ticket: int) -> list[tuple[Any, ...]]:
    """The store as the stopped bridge left it, read through `cdc sql` (no bridge serves it now)."""
    out = cdc_cli(
        state_dir,
        "sql",
        "--format",
        "json",
        f"SELECT event_type FROM events.domain_events WHERE aggregate_type = 'ticket' AND aggregate_id = '{ticket}'",
    )
    assert out.returncode == 0, out.stderr
    return [(json.loads(line)["event_type"],) for line in out.stdout.splitlines() if line.strip()]


def _captured(bootstrap: str, db: str) -> list[Message]:
    """Every record of the desk's change topics and its message topic, in offset order per partition."""
    topics = [f"{db}.public.tickets", f"{db}.public.desk_outbox", message_topic(db)]
    return [
        Message(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in read_to_end(bootstrap, topics)
    ]


class _Recorded:
    """Publisher and store of a replay: what the sink would send, kept here (the live store is compared)."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def publish(self, records: Sequence[OutRecord]) -> None:
        pass

    def append(self, events: Sequence[DomainEvent], payloads: Any = None, latest: Any = None) -> int:
        self.events.extend(events)
        return len(events)


def _replay(records: list[Message], dsn: str, batch: int) -> set[str]:
    """The records through a fresh sink, as the lane feeds it: batches, then the clock at each batch's end."""
    registry = load_modules([MODULE])
    recorded = _Recorded()
    sink = DomainEventSink(
        registry,
        PostgresSource(dsn),  # the tables' keys, as the bridge's worker reads them
        recorded,
        recorded,  # type: ignore[arg-type]
        authoring=Authoring(frozenset({"public.desk_outbox"}), "desk"),
        deadlines=DeadlineTracker(registry),
    )
    highwater: dict[tuple[str, int], int] = {}
    for m in records:
        highwater[(m.topic, m.partition)] = max(highwater.get((m.topic, m.partition), 0), m.offset + 1)
    by_partition: dict[tuple[str, int], list[Message]] = {}
    for m in records:
        by_partition.setdefault((m.topic, m.partition), []).append(m)
    positions = {tp: 0 for tp in highwater}
    # round robin over the partitions: the topics interleave differently from the live run
    queue = [m for group in zip(*[iter(ms) for ms in by_partition.values()], strict=False) for m in group]
    queue += [m for ms in by_partition.values() for m in ms[len(min(by_partition.values(), key=len)) :]]
    for i in range(0, len(queue), batch):
        chunk = queue[i : i + batch]
        for topic in dict.fromkeys(m.topic for m in chunk):
            sink.write(topic, [m for m in chunk if m.topic == topic and m.value])
        for m in chunk:
            positions[(m.topic, m.partition)] = m.offset + 1
        sink.finish_batch(lambda: positions, highwater)
    return {e.event_id for e in recorded.events if e.event_type == "TicketResponseOverdue"}


def _dead_letters(ch: Any) -> list[str]:
    rows = ch.query("SELECT error FROM cdc.dead_letters FINAL WHERE stage = 'events' ORDER BY offset").result_rows
    return [str(r[0]) for r in rows]


def test_authored_events_from_the_outbox_and_logical_messages_are_validated_stored_and_published(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, SCHEMA)
    bridge = _bridge(bridges, state_dir, database)
    ch = bridge.clickhouse()
    bootstrap = bridge.wait_for_line(r"Kafka bootstrap:\s+(\S+)").group(1)
    first, second = _open_ticket(database, "ken"), _open_ticket(database, "dennis")
    outbox = "INSERT INTO desk_outbox (aggregatetype, aggregateid, type, payload, version) VALUES (%s, %s, %s, %s, %s)"
    with psycopg.connect(database) as conn:  # the app's change and its own event: one transaction
        conn.execute("UPDATE tickets SET status = 'escalated' WHERE id = %s", (first,))
        conn.execute(
            outbox, ("ticket", str(first), "TicketEscalated", json.dumps({"ticket_id": first, "reason": "vip"}), 1)
        )
    message = {"type": "TicketEscalated", "payload": {"ticket_id": second, "reason": "legal", "level": "manager"}}
    with psycopg.connect(database) as conn:
        conn.execute("SELECT pg_logical_emit_message(true, 'desk', %s)", (json.dumps(message),))
    # what the catalog does not admit: an unknown type, a payload that does not fit, a derived type
    sql(database, outbox, ("ticket", "1", "TicketVanished", json.dumps({"ticket_id": 1}), None))
    sql(database, outbox, ("ticket", "1", "TicketEscalated", json.dumps({"ticket_id": 1}), 2))
    bad = {"type": "TicketOpened", "payload": {"ticket_id": 1, "customer": "mallory"}}
    sql(database, "SELECT pg_logical_emit_message(true, 'desk', %s)", (json.dumps(bad),))
    sentinel = _open_ticket(database, "frances")  # once it is stored, everything before it was handled

    wait_until(lambda: _of(_events(ch, sentinel), "TicketOpened"), 120, "the sentinel ticket")
    wait_until(lambda: len(_dead_letters(ch)) == 3, 60, "three dead letters")
    errors = _dead_letters(ch)  # two topics, the outbox table's and the messages': found by content

    def one(words: str) -> str:
        [found] = [e for e in errors if words in e]
        return found

    one("TicketOpened is derived from table changes")
    one("authored event type 'TicketVanished' from public.desk_outbox is not in the catalog")
    misfit = one("TicketEscalated v2 from public.desk_outbox does not fit the catalog")
    assert "payload.reason: missing" in misfit and "payload.level: missing" in misfit

    [(kind, version, _, event_id, latest, op)] = _of(_events(ch, first), "TicketEscalated")
    assert (kind, version, op) == ("TicketEscalated", 1, "c")
    assert json.loads(latest) == {"ticket_id": first, "reason": "vip", "level": "team"}  # upcast like any event
    app_id = sql(database, "SELECT id::text FROM desk_outbox WHERE type = 'TicketEscalated' AND version = 1")[0][0]
    assert event_id == app_id  # the outbox row's own id
    [(kind, version, _, message_id, latest, op)] = _of(_events(ch, second), "TicketEscalated")
    assert (version, op) == (2, "m") and json.loads(latest)["level"] == "manager"

    # published exactly like derived events: events.ticket, keyed by aggregate id, the same envelope
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    consumer.assign([TopicPartition("events.ticket", 0)])
    consumer.seek_to_beginning(TopicPartition("events.ticket", 0))
    published = {dict(r.headers)["event_id"].decode(): (r.key, json.loads(r.value)) for r in consumer}
    consumer.close()
    assert published[event_id][0] == str(first).encode()
    assert published[message_id][1]["event_type"] == "TicketEscalated"
    assert published[message_id][1]["source"]["table"] == "message:desk"
    assert sum(1 for _, doc in published.values() if doc["event_type"] == "TicketOpened") == 3

    catalog = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "events", "catalog", "--translators", MODULE, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert catalog.returncode == 0, catalog.stderr
    doc = json.loads(catalog.stdout)
    origins = {name: entry["origin"] for name, entry in doc["events"].items()}
    assert origins == {
        "TicketOpened": "derived",
        "TicketAnswered": "derived",
        "TicketClosed": "derived",
        "TicketEscalated": "authored",
        "TicketResponseOverdue": "deadline",
    }
    assert doc["deadlines"]["first-response"]["within_seconds"] == FIRST_RESPONSE.total_seconds()
