"""A truncation round with work done while Debezium is paused (an erasure's): the round always ends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cdc.errors import WarehouseError
from cdc.truncation import Truncator


class Capture:
    """What a round touches of a source: its hold, pause and rewind (Debezium and lanes pretend at once)."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.epoch = 0
        self.runner = None
        self.held_during: list[bool] = []

    def paused(self) -> bool:
        return self.hold.is_set()

    def rewind(self, epoch: int) -> None:
        self.epoch = epoch

    def rewound(self) -> bool:
        return True


def _truncator(capture: Capture, truncated: list[list[str]]) -> Truncator:
    return Truncator([capture], lambda: ["t1", "t2"], truncated.append, pause_timeout_s=1.0)  # type: ignore[list-item]


def test_work_runs_paused_then_the_topics_are_emptied_and_the_lanes_rewound() -> None:
    capture, truncated = Capture(), list[list[str]]()
    seen: list[Any] = []
    assert _truncator(capture, truncated).round(while_paused=lambda: seen.append((capture.hold.is_set(), truncated[:])))
    assert seen == [(True, [])]  # paused, topics not emptied yet
    assert truncated == [["t1", "t2"]] and capture.epoch == 1 and not capture.hold.is_set()


def test_failed_work_still_ends_the_round_then_raises() -> None:
    capture, truncated = Capture(), list[list[str]]()

    def fail() -> None:
        raise WarehouseError("ClickHouse went away")

    with pytest.raises(WarehouseError, match="went away"):
        _truncator(capture, truncated).round(while_paused=fail)
    assert truncated == [["t1", "t2"]] and capture.epoch == 1 and not capture.hold.is_set()
