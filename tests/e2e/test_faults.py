"""The fault suite (issue 11, part 5), and the 2-minute soak `make test` runs.

Unthrottled insert-heavy load from the soak's own application (an insert-only table, an
update-heavy one, inserts with deletes) while the bridge's parts are killed one after another:
kill -9 of the whole bridge (restarted at once), of its broker only, of its events worker only,
and `pg_ctl restart -m immediate`. Afterwards ClickHouse must equal PostgreSQL exactly — row
counts and checksums of every column — with no key twice among the current rows, no insert twice
in a change log and every change of the log once in the event store. Every wait is bounded.
"""

from __future__ import annotations

import pytest

from bench.soak import FAULTS, Run, execute

pytestmark = pytest.mark.e2e


def test_every_fault_under_unthrottled_load_ends_exact() -> None:
    run = Run(duration=120.0, faults=list(FAULTS), threads=1, batch=5, converge_timeout=600.0)
    result = execute(run, progress=print)
    assert [f["fault"] for f in result["faults"]] == list(FAULTS)
    assert all(f["done"] for f in result["faults"]), result["faults"]
    assert all(f["reported"] for f in result["faults"] if f["fault"] != "kill-bridge"), result["faults"]
    assert result["written"]["inserted"] > 10_000  # the load was real
    assert result["exact"], result["problems"]
    assert result["bridge_exit_code"] == 0
    memory = result["memory"]
    assert memory["peak_total_mb"] < 3072, memory
