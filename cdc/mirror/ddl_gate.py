"""Writes into a mirror's tables vs. recreating the views behind them or swapping a table in.

A row inserted into a Null table while its materialized view is dropped and recreated goes nowhere, and
one written while ``cdc resync`` swaps a table would land in the table swapped out. So writes hold the
gate shared (any number at once: the copy workers and the mirror's consumer) and DDL holds it exclusively.
A waiting DDL keeps new writes of other threads out, so it is never starved; a thread may take the DDL
side while it holds the write side itself (the consumer follows the source's schema mid-batch).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class DdlGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writers: dict[int, int] = {}  # thread -> writes it holds
        self._ddl_waiting = 0
        self._ddl_owner: int | None = None

    @contextmanager
    def insert(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._ddl_owner != me and not self._writers.get(me):
                while self._ddl_owner is not None or self._ddl_waiting:
                    self._cond.wait()
            self._writers[me] = self._writers.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._writers[me] -= 1
                if not self._writers[me]:
                    del self._writers[me]
                self._cond.notify_all()

    @contextmanager
    def ddl(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._ddl_owner == me:  # nested
                owned = False
            else:
                self._ddl_waiting += 1
                while self._ddl_owner is not None or any(t != me for t in self._writers):
                    self._cond.wait()
                self._ddl_waiting -= 1
                self._ddl_owner, owned = me, True
        try:
            yield
        finally:
            if owned:
                with self._cond:
                    self._ddl_owner = None
                    self._cond.notify_all()
