"""Memory and CPU of the benchmark's processes, read from /proc (Linux only, no psutil).

Peak memory: VmHWM (peak resident set) for single processes. PostgreSQL is many processes
sharing ``shared_buffers``, so summing their VmHWM would count shared pages many times; for it
the sampler records the peak of the *sum of PSS* (proportional set size: shared pages divided
among the processes mapping them) over the postmaster and all its children.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def status_kb(pid: int | str, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS, ...), 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _stat_fields(path: str) -> tuple[str, list[str]] | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    return text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int | str, tid: int | str | None = None) -> float:
    """utime + stime of a process (all threads) or of one of its threads."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    parsed = _stat_fields(path)
    if parsed is None:
        return 0.0
    fields = parsed[1]
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parsed = _stat_fields(f"/proc/{entry}/stat")
            if parsed is not None and int(parsed[1][1]) == ppid:
                out.append(int(entry))
    return out


def spawned_children(ppid: int) -> list[int]:
    """Children of ``ppid`` started by ``multiprocessing`` (spawn): the bridge's events workers."""
    found = []
    for pid in children(ppid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.spawn" in argv:
            found.append(pid)
    return found


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def thread_cpu(names: dict[int, str]) -> dict[str, float]:
    """CPU seconds per thread of this process, grouped by name (``names`` maps native ids of
    Python threads; other threads — JVM, chDB — go by their OS name, digits folded)."""
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        parsed = _stat_fields(f"/proc/self/task/{tid}/stat")
        if parsed is None:
            continue
        name = names.get(int(tid)) or "".join("#" if c.isdigit() else c for c in parsed[0])
        out[name] = out.get(name, 0.0) + (int(parsed[1][11]) + int(parsed[1][12])) / CLK_TCK
    return out


class Sampler:
    """Background sampling of PostgreSQL's total PSS (peak kept) every ``interval`` seconds."""

    def __init__(self, pg_data_dir: Path, interval: float = 2.0) -> None:
        self._data_dir = pg_data_dir
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self.pg_peak_pss_kb = 0
        self.pg_peak_processes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # not started when an earlier phase failed or was interrupted
            self._thread.join(timeout=5)

    def sample(self) -> None:
        pm = postmaster_pid(self._data_dir)
        if pm is None:
            return
        pids = [pm, *children(pm)]
        self.pg_peak_pss_kb = max(self.pg_peak_pss_kb, sum(pss_kb(p) for p in pids))
        self.pg_peak_processes = max(self.pg_peak_processes, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds of the postmaster and its live children (exited backends are not counted)."""
    pm = postmaster_pid(data_dir)
    if pm is None:
        return 0.0
    return sum(cpu_seconds(p) for p in [pm, *children(pm)])


def postgres_children_cpu_total(data_dir: Path) -> float:
    """Like ``postgres_cpu`` plus the CPU of children that already exited (cutime/cstime)."""
    pm = postmaster_pid(data_dir)
    if pm is None:
        return 0.0
    parsed = _stat_fields(f"/proc/{pm}/stat")
    waited = (int(parsed[1][13]) + int(parsed[1][14])) / CLK_TCK if parsed else 0.0
    return postgres_cpu(data_dir) + waited


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle/iowait since boot (first line of /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK
