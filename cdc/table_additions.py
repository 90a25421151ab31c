"""Adding tables to a running bridge (``cdc add-table TABLE...``, ``POST /tables``).

The request is applied on the bridge's main thread (from :meth:`Bridge.supervise`), never beside a
restart of the same parts. For the source that gets the tables:

1. the tables are chosen and checked like those of the configuration (a key, the column rules, a
   name the mirror can take), and each must be copyable (:mod:`cdc.mirror.copy_sql`);
2. the publication lists them, their mirror tables are created and the copy path plans their chunks
   (``cdc.initial_loads``);
3. Debezium and the source's lanes restart with the longer table list (the lanes resume from their
   committed offsets, Debezium from its last durable position; what it sends again is versioned by
   LSN, so it changes nothing), then the copy starts. The other tables keep their place in the stream.

Why nothing of a new table is lost: changes of it committed after the publication was altered are
streamed once Debezium runs with it in its table list; the copy reads the table after that, so it holds
every change committed before. The argument of :mod:`cdc.mirror.copy_sql` applies from there.

The added tables are remembered in ``<state_dir>/added_tables/<source>.json``, so a restart captures
them even if the configuration does not name them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdc.capture_tables import choose_tables
from cdc.domain.changes import TableSchema
from cdc.domain.names import display_table, parse_table
from cdc.errors import CdcError, ConfigError
from cdc.settings import SourceSpec

if TYPE_CHECKING:
    from cdc.capture import SourceCapture

log = logging.getLogger(__name__)
WAIT_S = 300.0  # how long a request waits for the main thread to apply it


def remembered(state_dir: Path, source: str) -> list[str]:
    """Tables added to ``source`` while it ran (``schema.table`` as displayed)."""
    path = _file(state_dir, source)
    try:
        return [str(t) for t in json.loads(path.read_text())]
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is unreadable ({e}): fix or delete it (it lists tables added at run time)") from e


def with_remembered(spec: SourceSpec, state_dir: Path, source: str) -> SourceSpec:
    """``spec`` with the tables added at run time (a spec naming no table captures every one already)."""
    added = [t for t in remembered(state_dir, source) if t not in spec.tables]
    return replace(spec, tables=(*spec.tables, *added)) if spec.tables and added else spec


def _remember(state_dir: Path, source: str, tables: list[str]) -> None:
    path = _file(state_dir, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(list(dict.fromkeys([*remembered(state_dir, source), *tables])), indent=1))
    tmp.replace(path)


def _file(state_dir: Path, source: str) -> Path:
    return state_dir / "added_tables" / f"{source}.json"


def new_tables(capture: SourceCapture, tables: list[str]) -> tuple[list[TableSchema], list[TableSchema]]:
    """(every table the source will capture, the new ones among them); ConfigError when one cannot be added."""
    have = {(s.ref.schema, s.ref.table) for s in capture.schemas}
    try:
        wanted = [parse_table(t) for t in tables]
    except ValueError as e:
        raise ConfigError(str(e)) from None
    fresh = [w for w in dict.fromkeys(wanted) if w not in have]
    if not fresh:
        raise ConfigError(f"source {capture.name!r} captures {', '.join(tables)} already")
    listed = tuple([s.ref.display for s in capture.schemas] + [display_table(s, t) for s, t in fresh])
    spec = replace(capture.spec, tables=listed)
    schemas = choose_tables(spec, capture.source, capture.rules, capture.name, capture.say)
    added = [s for s in schemas if (s.ref.schema, s.ref.table) in set(fresh)]
    left_out = set(fresh) - {(s.ref.schema, s.ref.table) for s in added}
    if left_out:
        raise ConfigError(f"cannot capture {', '.join(f'{s}.{t}' for s, t in left_out)}: see the warnings above")
    for schema in added:
        why = capture.rules.copy_refusal(schema)
        if why:
            raise ConfigError(
                f"{schema.ref.display} cannot be added while the bridge runs: {why} (the copy path cannot load it);"
                " name it in the configuration and restart, and Debezium's snapshot loads it"
            )
    return [s for s in schemas if (s.ref.schema, s.ref.table) in have] + added, added


class TableAdditions:
    """Requests from the status server's thread, applied by the main thread's :meth:`apply_pending`."""

    def __init__(
        self,
        captures: list[SourceCapture],
        restart: Callable[[SourceCapture, Callable[[], None]], None],
        state_dir: Path,
    ) -> None:
        self._captures, self._restart, self._state_dir = captures, restart, state_dir
        self._pending: queue.Queue[tuple[str | None, list[str], Future[dict[str, Any]]]] = queue.Queue()
        self._lock = threading.Lock()

    def action(self, method: str, body: Mapping[str, Any] | None) -> tuple[int, Any]:
        """``POST /tables {"tables": ["schema.table", ...], "source": "name" (optional)}``."""
        tables = (body or {}).get("tables")
        source = (body or {}).get("source")
        if method != "POST" or not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
            return 400, {"error": 'POST a JSON object {"tables": ["schema.table", ...], "source": "name"}'}
        done: Future[dict[str, Any]] = Future()
        self._pending.put((source if isinstance(source, str) else None, list(tables), done))
        try:
            return 200, done.result(WAIT_S)
        except CdcError as e:
            return 409, {"error": str(e)}
        except TimeoutError:
            return 504, {"error": f"the bridge did not apply it within {WAIT_S:.0f} s: see its log"}

    def apply_pending(self) -> None:
        """Apply the requests waiting (main thread only)."""
        while True:
            try:
                source, tables, done = self._pending.get_nowait()
            except queue.Empty:
                return
            try:
                done.set_result(self._apply(source, tables))
            except CdcError as e:
                done.set_exception(e)
            except Exception as e:  # a bug: the requester hears of it, the bridge goes on
                log.exception("adding %s failed", tables)
                done.set_exception(CdcError(f"{type(e).__name__}: {e}"))

    def _apply(self, source: str | None, tables: list[str]) -> dict[str, Any]:
        captures = [c for c in self._captures if source in (None, c.name)]
        if not captures:
            raise ConfigError(f"no source named {source!r}: {', '.join(c.name for c in self._captures)}")
        if len(captures) > 1:
            raise ConfigError(f"several sources run ({', '.join(c.name for c in captures)}): name one with --source")
        capture = captures[0]
        schemas, added = new_tables(capture, tables)
        assert capture.sink is not None and capture.load is not None
        capture.source.ensure_publication(capture.slot, [(s.ref.schema, s.ref.table) for s in schemas])
        capture.sink.prepare(schemas)
        capture.record_tables(schemas)
        load = capture.load

        def grow() -> None:  # with Debezium stopped: no copy may read a table before Debezium streams it
            load.add(added)
            capture.schemas = schemas

        capture.say(f"adding {', '.join(s.ref.display for s in added)} to source {capture.name}: restarting its stream")
        self._restart(capture, grow)
        _remember(self._state_dir, capture.name, [s.ref.display for s in added])
        return {"source": capture.name, "added": [s.ref.display for s in added]}
