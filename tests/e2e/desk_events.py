"""A help desk's events: a second schema (not the demo shop) for the deadline and outbox tests.

Tickets are opened, answered and closed; a first answer is due within ``FIRST_RESPONSE`` of
opening (source commit time); the desk's app writes ``TicketEscalated`` itself, through its outbox
table or a logical message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cdc.domain.deadlines import deadline
from cdc.domain.events import event, translator, upcaster
from cdc.translate import Change

FIRST_RESPONSE = dt.timedelta(seconds=8)
SCHEMA = """
CREATE TABLE tickets (
    id bigserial PRIMARY KEY, customer text NOT NULL, status text NOT NULL DEFAULT 'open',
    opened_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE tickets REPLICA IDENTITY FULL;
CREATE TABLE desk_outbox (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), aggregatetype text NOT NULL, aggregateid text NOT NULL,
    type text NOT NULL, payload jsonb NOT NULL, version int);
"""


@event("TicketOpened", aggregate="ticket", key="ticket_id", tables=["public.tickets"])
@dataclass(frozen=True)
class TicketOpened:
    ticket_id: int
    customer: str


@event("TicketAnswered", aggregate="ticket", key="ticket_id", tables=["public.tickets"])
@dataclass(frozen=True)
class TicketAnswered:
    ticket_id: int


@event("TicketClosed", aggregate="ticket", key="ticket_id", tables=["public.tickets"])
@dataclass(frozen=True)
class TicketClosed:
    ticket_id: int


@translator("public.tickets")
def tickets(change: Change) -> Iterator[object]:
    row = change.row
    if change.op in ("create", "snapshot"):
        yield TicketOpened(row["id"], row["customer"])
    elif change.op == "update" and "status" in change.changed:
        if row["status"] == "answered":
            yield TicketAnswered(row["id"])
        elif row["status"] == "closed":
            yield TicketClosed(row["id"])


@event("TicketResponseOverdue", aggregate="ticket", key="ticket_id")
@dataclass(frozen=True)
class TicketResponseOverdue:
    """No answer within the first-response promise."""

    ticket_id: int
    customer: str
    due_at: str


deadline(
    "first-response",
    start="TicketOpened",
    end=("TicketAnswered", "TicketClosed"),
    within=FIRST_RESPONSE,
    emits=TicketResponseOverdue,
)


@event("TicketEscalated", version=1, aggregate="ticket", key="ticket_id", authored=True)
@dataclass(frozen=True)
class TicketEscalatedV1:
    ticket_id: int
    reason: str


@event("TicketEscalated", version=2, aggregate="ticket", key="ticket_id", authored=True)
@dataclass(frozen=True)
class TicketEscalated:
    """The desk's app escalated a ticket (no column says so: it writes the event itself)."""

    ticket_id: int
    reason: str
    level: str


@upcaster("TicketEscalated", from_version=1)
def escalated_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "level": "team"}
