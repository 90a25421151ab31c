"""Child processes that must not outlive the bridge (broker, Dagster UI): the kernel's death signal."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: ask the kernel to SIGTERM the child when its parent dies.

    Linux ties the death signal to the *thread* that forked: start children from a thread
    that lives as long as they should (normally the main thread).
    """
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # parent died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
