"""The embedded warehouse: this process owns the chDB store and serves it over ClickHouse's HTTP.

chDB admits one process per data directory, so the bridge process opens the store, serves it on
loopback and publishes the URL in the state dir (:mod:`cdc.embedded.endpoint`); every other
process (the events worker, Dagster, ``cdc sql``) talks HTTP to it like to a ClickHouse server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cdc.embedded.endpoint import clear_endpoint, find_endpoint, store_lock_holder, warehouse_data_dir, write_endpoint
from cdc.errors import StackError

if TYPE_CHECKING:  # chDB (~180 MB of library mapped) only where the store is opened: not in the events worker
    from cdc.embedded.chdb_server import ChdbHttpServer


def refuse_second_bridge(state_dir: Path) -> None:
    """One bridge per state dir: raise if another one serves this state dir's warehouse."""
    running = find_endpoint(state_dir)
    if running:
        raise StackError(
            f"a bridge already runs on state dir {state_dir} (ClickHouse endpoint {running}); "
            "stop it first, or pass another --state-dir"
        )


class EmbeddedWarehouse:
    """Start: refuse a second owner, open and serve the store, publish the endpoint. Stop: the reverse."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self._state_dir = state_dir
        self._port = port
        self._server: ChdbHttpServer | None = None
        self.url = ""

    def start(self) -> None:
        data_dir = warehouse_data_dir(self._state_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        refuse_second_bridge(self._state_dir)
        holder = store_lock_holder(data_dir)
        if holder:
            raise StackError(
                f"the ClickHouse store in {data_dir} is in use by another process ({holder}); "
                "stop it first, or pass another --state-dir"
            )
        from cdc.embedded.chdb_server import ChdbHttpServer

        server = ChdbHttpServer(data_dir, port=self._port)
        server.start()
        self._server = server  # only now is the endpoint ours to clear on stop
        self.url = server.url
        write_endpoint(self._state_dir, self.url)

    def is_running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        if self._server is not None:
            clear_endpoint(self._state_dir)
            self._server.stop()
            self._server = None
