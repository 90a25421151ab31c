"""Ctrl-C and SIGTERM in a bench process that runs a bridge (and so a JVM) in-process."""

from __future__ import annotations

import signal
from typing import Any


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def interruptible() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread.

    A JVM started by JPype with ``interrupt=True`` (its default when Python is not interactive)
    owns SIGINT, after which Ctrl-C never reaches Python; taking the signals back (harmless when
    the JVM was started with ``interrupt=False``) lets the caller's ``finally`` stop everything.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
