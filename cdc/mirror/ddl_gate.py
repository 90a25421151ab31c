"""Inserts into a mirror's Null tables vs. recreating the views behind them.

A row inserted into a Null table while its materialized view is dropped and recreated goes nowhere. So
inserts hold the gate shared (any number at once: the copy workers and the mirror's consumer) and view
recreation holds it exclusively; a waiting recreation keeps new inserts out, so it is never starved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class DdlGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inserts = 0
        self._ddl_waiting = 0
        self._ddl = False
        self._owner: int | None = None

    @contextmanager
    def insert(self) -> Iterator[None]:
        with self._cond:
            if self._owner != threading.get_ident():  # the DDL's own thread may insert
                while self._ddl or self._ddl_waiting:
                    self._cond.wait()
            self._inserts += 1
        try:
            yield
        finally:
            with self._cond:
                self._inserts -= 1
                self._cond.notify_all()

    @contextmanager
    def ddl(self) -> Iterator[None]:
        with self._cond:
            self._ddl_waiting += 1
            while self._ddl or self._inserts:
                self._cond.wait()
            self._ddl_waiting -= 1
            self._ddl, self._owner = True, threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                self._ddl, self._owner = False, None
                self._cond.notify_all()
