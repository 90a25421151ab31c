"""Deadline rules and their tracker: source commit time only, deterministic alerts, a state that can be rolled back."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import pytest

from cdc.domain.deadlines import OP, DeadlineTracker, Pending, alert_id, deadline
from cdc.domain.events import DomainEvent, EventDefinitionError, EventRegistry, collecting, event

WINDOW_MS = 60_000


def _registry(**rule: object) -> EventRegistry:
    reg = EventRegistry()
    with collecting(reg):

        @event("Opened", aggregate="ticket", key="ticket_id")
        @dataclass(frozen=True)
        class Opened:
            ticket_id: int
            customer: str

        @event("Answered", aggregate="ticket", key="ticket_id")
        @dataclass(frozen=True)
        class Answered:
            ticket_id: int

        @event("Overdue", aggregate="ticket", key="ticket_id")
        @dataclass(frozen=True)
        class Overdue:
            ticket_id: int
            customer: str
            due_at: str
            started_event_id: str

        args = {
            "start": "Opened",
            "end": "Answered",
            "within": dt.timedelta(milliseconds=WINDOW_MS),
            "emits": Overdue,
            **rule,
        }
        deadline("first-response", **args)  # type: ignore[arg-type]
    return reg


def _event(kind: str, ticket: int, at_ms: int, lsn: int, op: str = "c") -> DomainEvent:
    payload = {"ticket_id": ticket, "customer": f"c{ticket}"} if kind == "Opened" else {"ticket_id": ticket}
    return DomainEvent(
        event_id=f"00000000-0000-0000-0000-{lsn:012d}",
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
        correlation_id=f"10000000-0000-0000-0000-{lsn:012d}",
        payload=payload,
    )


def test_a_deadline_fires_once_the_clock_passes_it_and_not_before() -> None:
    tracker = DeadlineTracker(_registry())
    opened = _event("Opened", 1, 1_000, 10)
    assert tracker.observe(opened) == []
    assert tracker.advance(1_000 + WINDOW_MS, 11) == []  # at the due time an answer may still come
    [alert] = tracker.advance(1_000 + WINDOW_MS + 1, 12)
    assert alert.event_type == "Overdue" and alert.aggregate_id == "1" and alert.op == OP
    assert alert.event_id == alert_id("first-response", opened.event_id)
    assert alert.occurred_at_ms == 1_000 + WINDOW_MS  # the due time, not when it was noticed
    assert alert.payload == {
        "ticket_id": 1,
        "customer": "c1",
        "due_at": "1970-01-01T00:01:01+00:00",
        "started_event_id": opened.event_id,
    }
    assert alert.correlation_id == opened.correlation_id
    assert tracker.advance(10**12, 13) == [] and tracker.open == 0  # once only


def test_a_timely_ending_cancels_the_deadline() -> None:
    tracker = DeadlineTracker(_registry())
    tracker.observe(_event("Opened", 1, 1_000, 10))
    assert tracker.observe(_event("Answered", 1, 1_000 + WINDOW_MS, 20)) == []  # exactly at the due time: in time
    assert tracker.advance(10**12, 21) == [] and tracker.open == 0


def test_a_late_ending_emits_the_alert_before_it_closes_the_deadline() -> None:
    tracker = DeadlineTracker(_registry())
    opened = _event("Opened", 1, 1_000, 10)
    tracker.observe(opened)
    [alert] = tracker.observe(_event("Answered", 1, 1_000 + WINDOW_MS + 1, 20))
    assert alert.event_id == alert_id("first-response", opened.event_id) and tracker.open == 0


def test_an_ending_event_older_than_the_start_does_not_end_it() -> None:
    tracker = DeadlineTracker(_registry())
    tracker.observe(_event("Opened", 1, 5_000, 30))
    assert tracker.observe(_event("Answered", 1, 4_000, 20)) == [] and tracker.open == 1


def test_snapshot_events_open_no_deadline() -> None:
    tracker = DeadlineTracker(_registry())
    tracker.observe(_event("Opened", 1, 1_000, 10, op="r"))
    assert tracker.open == 0


def test_the_earliest_start_of_a_key_counts() -> None:
    tracker = DeadlineTracker(_registry())
    first = _event("Opened", 1, 1_000, 10)
    tracker.observe(first)
    tracker.observe(_event("Opened", 1, 30_000, 20))
    [alert] = tracker.advance(10**12, 30)
    assert alert.event_id == alert_id("first-response", first.event_id)


def _history(seed: int) -> list[DomainEvent]:
    """Tickets opened over ten minutes; some answered in time, some late, some never."""
    rng = random.Random(seed)
    events, lsn = [], 0
    for ticket in range(200):
        lsn += 10
        at = ticket * 3_000
        events.append(_event("Opened", ticket, at, lsn))
        answer = rng.choice([None, rng.randint(1, WINDOW_MS), rng.randint(WINDOW_MS + 1, 3 * WINDOW_MS)])
        if answer is not None:
            events.append(_event("Answered", ticket, at + answer, 0))
    ordered = sorted(events, key=lambda e: (e.occurred_at_ms, e.event_type != "Opened"))
    return [_relsn(e, i + 1) for i, e in enumerate(ordered)]  # LSNs in commit order, as PostgreSQL gives them


def _relsn(e: DomainEvent, lsn: int) -> DomainEvent:
    return DomainEvent(
        event_id=e.event_id if e.event_type == "Opened" else f"20000000-0000-0000-0000-{lsn:012d}",
        event_type=e.event_type,
        version=e.version,
        aggregate_type=e.aggregate_type,
        aggregate_id=e.aggregate_id,
        occurred_at_ms=e.occurred_at_ms,
        source=e.source,
        table=e.table,
        op=e.op,
        lsn=lsn,
        txid=e.txid,
        sequence=0,
        correlation_id=e.correlation_id,
        payload=e.payload,
    )


def _replay(history: list[DomainEvent], batch: int, lag_ms: int) -> set[str]:
    """The tracker as the lane drives it: a batch of events, then the clock (trailing by ``lag_ms``)."""
    tracker = DeadlineTracker(_registry())
    alerts: set[str] = set()
    for i in range(0, len(history), batch):
        chunk = history[i : i + batch]
        for e in chunk:
            alerts |= {a.event_id for a in tracker.observe(e)}
        alerts |= {a.event_id for a in tracker.advance(chunk[-1].occurred_at_ms - lag_ms, chunk[-1].lsn)}
    alerts |= {a.event_id for a in tracker.advance(10**13, 10**9)}
    return alerts


def test_replaying_the_same_history_emits_the_same_alerts_whatever_the_batches() -> None:
    history = _history(7)
    expected = {
        alert_id("first-response", e.event_id)
        for e in history
        if e.event_type == "Opened"
        and not any(
            a.event_type == "Answered"
            and a.aggregate_id == e.aggregate_id
            and a.occurred_at_ms <= e.occurred_at_ms + WINDOW_MS
            for a in history
        )
    }
    assert 20 < len(expected) < 180  # the history has both kinds
    for batch, lag in ((1, 0), (7, 0), (50, 5_000), (len(history), 0)):
        assert _replay(history, batch, lag) == expected


def test_a_rolled_back_batch_meets_the_same_state_again() -> None:
    tracker = DeadlineTracker(_registry())
    tracker.observe(_event("Opened", 1, 1_000, 10))
    state = tracker.checkpoint()
    assert len(tracker.advance(10**12, 11)) == 1
    tracker.rollback(state)  # the store write failed: the loop retries the batch
    assert len(tracker.advance(10**12, 11)) == 1


def test_restored_deadlines_fire_like_live_ones() -> None:
    reg = _registry()
    opened = _event("Opened", 1, 1_000, 10)
    tracker = DeadlineTracker(reg)
    tracker.restore([Pending("first-response", "1", opened, 1_000 + WINDOW_MS)])
    assert tracker.open == 1
    [alert] = tracker.advance(10**12, 99)
    assert alert.event_id == alert_id("first-response", opened.event_id)


def test_a_rule_that_cannot_work_is_refused_when_its_module_loads() -> None:
    reg = _registry(end="Nope")
    assert any("Nope is not a declared event" in p for p in reg.deadlines["first-response"].problems(reg))

    @dataclass(frozen=True)
    class NotDeclared:
        ticket_id: int

    reg = _registry(emits=NotDeclared)
    assert reg.deadlines["first-response"].problems(reg) == [
        "deadline 'first-response': emits NotDeclared, which is not a declared @event"
    ]


def test_the_default_alert_needs_fields_the_start_event_carries() -> None:
    reg = EventRegistry()
    with collecting(reg):

        @event("Opened", aggregate="ticket", key="ticket_id")
        @dataclass(frozen=True)
        class Opened:
            ticket_id: int

        @event("Late", aggregate="ticket", key="ticket_id")
        @dataclass(frozen=True)
        class Late:
            ticket_id: int
            priority: str

        deadline("r", start="Opened", end="Opened2", within=dt.timedelta(seconds=1), emits=Late)
    problems = reg.deadlines["r"].problems(reg)
    assert any("Late needs priority, which Opened does not carry" in p for p in problems)
    with collecting(reg), pytest.raises(EventDefinitionError, match="declared twice"):
        deadline("r", start="Opened", end="Opened", within=dt.timedelta(seconds=1), emits=Late)
