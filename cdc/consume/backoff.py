"""Exponential backoff for outages, and the stop signal a waiting lane honours."""

from __future__ import annotations

from typing import Protocol


class Backoff:
    """Exponential backoff: ``first`` seconds after a failure, doubling up to ``cap``; a success resets it."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self._first = first
        self._cap = cap
        self._delay = first

    def reset(self) -> None:
        self._delay = self._first

    def next_delay(self) -> float:
        delay = self._delay
        self._delay = min(delay * 2, self._cap)
        return delay


class Stopping(Protocol):
    """A threading or multiprocessing ``Event``: waiting on it ends early once it is set."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...
