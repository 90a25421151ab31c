"""The durability gate: Debezium's position released only past what every lane made durable."""

from __future__ import annotations

import threading

from cdc.debezium.gate import Batch, DurabilityGate

TOPIC, HEARTBEAT = "src.public.t", "__debezium-heartbeat.src"


def _gate(durable: dict[tuple[str, int], int], max_in_flight: int = 1000) -> DurabilityGate:
    return DurabilityGate(lambda: durable, lambda: {TOPIC}, max_in_flight, sleep=lambda s: None)


def test_batches_are_released_in_order_once_every_lane_committed_past_them() -> None:
    durable: dict[tuple[str, int], int] = {}
    gate = _gate(durable)
    gate.admit(Batch("r1", {(TOPIC, 0): 9}, 10, False))
    gate.admit(Batch("r2", {(TOPIC, 0): 19}, 10, True))
    assert gate.releasable() is None and gate.in_flight == 20
    durable[(TOPIC, 0)] = 9  # the record at offset 9 is not committed yet (committed = next to read)
    assert gate.releasable() is None
    durable[(TOPIC, 0)] = 15
    released = gate.releasable()
    assert released is not None and released.last_record == "r1" and gate.in_flight == 10
    assert not gate.snapshot_durable
    durable[(TOPIC, 0)] = 20
    released = gate.releasable()
    assert released is not None and released.last_record == "r2" and gate.in_flight == 0 and gate.snapshot_durable


def test_a_later_batch_never_overtakes_an_earlier_one() -> None:
    durable = {(TOPIC, 0): 0}
    gate = _gate(durable)
    gate.admit(Batch("data", {(TOPIC, 0): 4}, 5, False))
    gate.admit(Batch("heartbeat", {(HEARTBEAT, 0): 0}, 1, False))  # no lane reads it: durable by itself
    assert gate.releasable() is None  # but it waits behind the data before it
    durable[(TOPIC, 0)] = 5
    released = gate.releasable()
    assert released is not None and released.last_record == "heartbeat" and gate.pending_batches == 0


def test_backpressure_waits_until_the_lanes_catch_up() -> None:
    durable = {(TOPIC, 0): 0}
    gate = _gate(durable, max_in_flight=10)
    gate.admit(Batch("r", {(TOPIC, 0): 9}, 10, False))
    calls = []

    def release() -> None:
        calls.append(1)
        if len(calls) == 3:
            durable[(TOPIC, 0)] = 10  # the lanes store the batch meanwhile
        gate.releasable()

    gate.wait_for_room(release, stop=lambda: False)
    assert len(calls) == 3 and gate.in_flight == 0


def test_a_pause_holds_until_nothing_is_in_flight_then_until_withdrawn() -> None:
    durable = {(TOPIC, 0): 0}
    gate = _gate(durable)
    gate.admit(Batch("r", {(TOPIC, 0): 0}, 1, False))
    gate.pause_requested.set()
    seen_paused = threading.Event()

    def release() -> None:
        durable[(TOPIC, 0)] = 1
        gate.releasable()
        if gate.paused.is_set():
            seen_paused.set()

    def sleep(_: float) -> None:
        if gate.paused.is_set():
            seen_paused.set()
            gate.pause_requested.clear()  # the truncation is done

    gate._sleep = sleep
    gate.hold_while_paused(release, stop=lambda: False)
    assert seen_paused.is_set() and gate.pending_batches == 0 and not gate.paused.is_set()


def test_not_durable_counts_what_the_lanes_have_not_committed_even_before_debezium_is_told() -> None:
    durable: dict[tuple[str, int], int] = {}
    gate = _gate(durable)
    gate.admit(Batch("tick", {(TOPIC, 0): 4}, 1, True))
    assert gate.not_durable() == 1 and gate.in_flight == 1
    durable[(TOPIC, 0)] = 5  # the lanes committed it; Debezium hears so on its next batch
    assert gate.not_durable() == 0 and gate.in_flight == 1
    assert gate.releasable() is not None and gate.in_flight == 0
