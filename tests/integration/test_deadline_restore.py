"""Open deadlines rebuilt from the event store (real chDB): the starts with no ending event after them
and no alert of their own; the restored tracker then fires exactly those."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.domain.deadlines import DeadlineTracker, alert_id
from cdc.domain.events import DomainEvent, load_modules
from cdc.events.deadlines import open_deadlines
from cdc.events.store import ClickHouseEventStore
from tests.e2e.desk_events import FIRST_RESPONSE

WINDOW_MS = int(FIRST_RESPONSE.total_seconds() * 1000)
REGISTRY = load_modules(["tests.e2e.desk_events"])


@pytest.fixture
def store(chdb_warehouse: ClickHouseWarehouse) -> Iterator[ClickHouseEventStore]:
    chdb_warehouse.command("DROP TABLE IF EXISTS events.domain_events SYNC")
    yield ClickHouseEventStore(chdb_warehouse, REGISTRY)


def _event(kind: str, ticket: int, at_ms: int, lsn: int, op: str = "c") -> DomainEvent:
    payload: dict[str, object] = {"ticket_id": ticket}
    if kind == "TicketOpened":
        payload["customer"] = f"customer {ticket}"
    return DomainEvent(
        event_id=f"00000000-0000-4000-8000-{lsn:012d}",
        event_type=kind,
        version=1,
        aggregate_type="ticket",
        aggregate_id=str(ticket),
        occurred_at_ms=at_ms,
        source="desk",
        table="public.tickets",
        op=op,
        lsn=lsn,
        txid=lsn,
        sequence=0,
        correlation_id=f"10000000-0000-4000-8000-{lsn:012d}",
        payload=payload,
    )


def test_the_open_deadlines_are_the_unended_unalerted_starts(
    store: ClickHouseEventStore, chdb_warehouse: ClickHouseWarehouse
) -> None:
    live = DeadlineTracker(REGISTRY)
    history = [
        _event("TicketOpened", 1, 1_000, 10),  # answered in time: closed
        _event("TicketOpened", 2, 2_000, 20),  # alerted below: closed
        _event("TicketOpened", 3, 3_000, 30),  # open
        _event("TicketOpened", 4, 4_000, 40, op="r"),  # a snapshot row: no deadline
        _event("TicketAnswered", 1, 1_500, 50),
        _event("TicketOpened", 5, 2_500, 60),  # open, ended only by an answer older than it
        _event("TicketClosed", 5, 2_400, 55),
    ]
    alerts: list[DomainEvent] = []
    for e in history:
        alerts += live.observe(e)
    alerts += live.advance(2_000 + WINDOW_MS + 1, 70)  # ticket 2's deadline passed; 3 and 5 not yet
    assert [a.aggregate_id for a in alerts] == ["2"]
    store.append(history + alerts)

    restored = open_deadlines(chdb_warehouse, REGISTRY)
    assert restored.open == live.open == 2
    fired = {a.aggregate_id: a.event_id for a in restored.advance(10**12, 99)}
    assert fired == {
        "3": alert_id("first-response", history[2].event_id),
        "5": alert_id("first-response", history[5].event_id),
    }
    assert {a.event_id for a in live.advance(10**12, 99)} == set(fired.values())  # as if it had never stopped
