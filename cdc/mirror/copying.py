"""Moving rows of a table from PostgreSQL into its mirror by the copy path (:mod:`cdc.mirror.copy_sql`):
read with ``COPY`` into files, then each file inserted whole.

The rows go through temporary files of at most ``FILE_BYTES``, each one insert: memory stays at one
read block, and a reader need not wait for ClickHouse. The initial load reads and inserts on different
threads (:mod:`cdc.mirror.initial_load`); :func:`copy_rows` does both in turn (``cdc resync``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from cdc.errors import SourceError
from cdc.mirror.copy_sql import copy_columns, copy_query
from cdc.mirror.table import MirrorTable
from cdc.ports import SourceDatabase, Warehouse

BLOCK_BYTES = 4 << 20  # read from the source at once
FILE_BYTES = 32 << 20  # per insert (~300,000 rows of the bench's shape): inserts begin early, the last one is short
_SETTINGS = {"optimize_on_insert": 0}  # each key once per chunk; the views read FINAL anyway (a third faster)
Guard = Callable[[], AbstractContextManager[object]]
_SCRATCH = "cdc-copy-"  # + pid + "-" + random: a copy's files, in the system's temporary directory


def scratch_dir() -> Path:
    """A new directory for a copy's files, named after this process: :func:`remove_stale_scratch` removes
    those a killed process left behind."""
    return Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-"))


def remove_stale_scratch() -> None:
    """Remove the copy files of processes that are gone (kill -9 leaves them)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_SCRATCH}*-*"):
        pid = path.name[len(_SCRATCH) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def read_rows(
    source: SourceDatabase,
    table: MirrorTable,
    where: str,
    scratch: Path,
    snapshot: str | None = None,
    progress: Callable[[int], None] | None = None,
    masks: Mapping[str, str] | None = None,
) -> Iterator[tuple[Path, int]]:
    """The rows of ``table`` matching ``where`` (a SQL condition), as files in ``scratch`` of at most about
    ``FILE_BYTES``, each yielded with its row count once written. ``snapshot``: an exported snapshot to
    read under; ``progress(rows)``: told the rows read so far; ``masks``: see :func:`copy_query`."""
    live = source.table_schema(table.schema.ref)
    if live is None:
        raise SourceError(f"{table.schema.ref.display} is gone from the source")
    total = rows = 0
    path, out = scratch / "0.tsv", None
    try:
        for block in source.copy_out(copy_query(table, live, where, masks), BLOCK_BYTES, snapshot):
            if out is None:
                out, rows = path.open("wb"), 0
            out.write(block)
            n = block.count(b"\n")
            rows, total = rows + n, total + n
            if progress is not None:
                progress(total)
            if out.tell() >= FILE_BYTES:
                out.close()
                out = None
                yield path, rows
                path = scratch / f"{int(path.stem) + 1}.tsv"
        if out is not None:
            out.close()
            out = None
            yield path, rows
    finally:
        if out is not None:
            out.close()


def insert_rows(
    warehouse: Warehouse, table: MirrorTable, path: Path, into: str = "_copy_", guard: Guard = nullcontext
) -> None:
    """Insert a file of :func:`read_rows` into ``<into><table>`` (its Null table), holding ``guard()``
    (the sink takes it exclusively while it recreates the views)."""
    with guard():
        warehouse.insert_file(table.database, into + table.name, copy_columns(table), path, "TabSeparated", _SETTINGS)


def copy_rows(
    source: SourceDatabase,
    warehouse: Warehouse,
    table: MirrorTable,
    where: str = "",
    guard: Guard = nullcontext,
    into: str = "_copy_",
    snapshot: str | None = None,
    masks: Mapping[str, str] | None = None,
) -> int:
    """Copy the rows of ``table`` matching ``where`` into its mirror, each file inserted once read; the count.
    ``into``: the prefix of the Null table taking the rows (``cdc.mirror.resync`` and ``cdc.mirror.parity``
    have their own); ``masks``: see :func:`cdc.mirror.copy_sql.copy_query`."""
    copied = 0
    scratch = scratch_dir()
    try:
        for path, rows in read_rows(source, table, where, scratch, snapshot, masks=masks):
            insert_rows(warehouse, table, path, into, guard)
            path.unlink()
            copied += rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return copied
