from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.adapters.clickhouse import ClickHouseWarehouse, open_embedded


@pytest.fixture(scope="module")
def chdb_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseWarehouse]:
    """A real embedded ClickHouse (chDB) store, private to the test module (chDB: one store per process at a time)."""
    warehouse = open_embedded(Path(tmp_path_factory.mktemp("warehouse")))
    yield warehouse
    warehouse.close()
