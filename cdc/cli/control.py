"""Commands the running bridge carries out, over its status server: `cdc resync TABLE` (``POST /resync``,
then its progress), `cdc add-table TABLE...` (``POST /tables``) and `cdc verify [TABLE...]` (``POST /parity``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from cdc.errors import ConfigError, StackError
from cdc.status.client import bridge_url, call, call_code

EXIT_DONE, EXIT_DRIFT, EXIT_FAILED = 0, 1, 2


def resync(state_dir: Path, table: str, source: str | None, wait: bool = True, only_list: bool = False) -> int:
    if not table and not only_list:
        raise ConfigError("name the table to resync (schema.table), or pass --list")
    url = bridge_url(state_dir)
    if only_list:
        for job in call(url, "/resync", "GET"):
            print(_line(job))
        return EXIT_DONE
    code, job = call_code(url, "/resync", "POST", {"table": table, "source": source})
    if code != 202:
        print(f"error: {job.get('error', job)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"resync of {job['table']} (source {job['source']}) started")
    while wait and job["state"] not in ("done", "failed"):
        time.sleep(2.0)
        mine = [j for j in call(url, "/resync", "GET") if (j["source"], j["table"], j["started_at"]) == _id(job)]
        if not mine:
            raise StackError("the bridge no longer lists this resync (was it restarted?): check `cdc resync --list`")
        job = mine[0]
        print(_line(job), flush=True)
    if job["state"] == "failed":
        print(f"error: {job['error']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_DONE


def add_tables(state_dir: Path, tables: list[str], source: str | None) -> int:
    """Add ``tables`` to the running bridge: copied by the copy path, then streamed."""
    url = bridge_url(state_dir)
    print(f"adding {', '.join(tables)}: Debezium and the source's lanes restart with them ...", flush=True)
    code, answer = call_code(url, "/tables", "POST", {"tables": tables, "source": source})
    if code != 200:
        print(f"error: {answer.get('error', answer)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"source {answer['source']} now captures {', '.join(answer['added'])}; their rows are being copied"
          " (progress: `cdc status`)")  # fmt: skip
    return EXIT_DONE


def verify(state_dir: Path, tables: list[str], source: str | None, budget_rows: int | None) -> int:
    """Compare ``tables`` (every captured table when none) with the source, one line per table: exit 0 all
    equal, 1 drift found, 2 a table could not be compared (or the bridge refused)."""
    url = bridge_url(state_dir)
    reports = []
    wanted: list[str | None] = list(tables) or [None]
    for table in wanted:
        code, answer = call_code(url, "/parity", "POST", {"table": table, "source": source, "budget_rows": budget_rows})
        if code != 200:
            print(f"error: {answer.get('error', answer)}", file=sys.stderr)
            return EXIT_FAILED
        reports += answer["reports"]
    for report in reports:
        print(_parity_line(report), flush=True)
    if any(r["result"] == "drift" for r in reports):
        return EXIT_DRIFT
    return EXIT_DONE if all(r["result"] == "ok" for r in reports) else EXIT_FAILED


def _parity_line(r: dict[str, Any]) -> str:
    head = f"{r['source']} {r['table']}: {r['result']}"
    if r["result"] in ("unsupported", "failed"):
        return f"{head}: {r['reason']}"
    cycle = "to the table's end" if r["complete_cycle"] else f"the next run goes on from {_bound(r['next_cursor'])}"
    line = f"{head}, {r['rows_compared']:,} rows in {r['ranges_checked']} range(s) ({cycle}, {r['seconds']:.1f} s)"
    if r["unsettled"]:
        line += f", {r['unsettled']} key(s) still changing"
    if r["result"] == "drift":
        first = r["first_range"]
        bounds = f"[{_bound(first['lower'])}, {_bound(first['upper'])})"
        keys = ", ".join(json.dumps(k[0] if len(k) == 1 else k) for k in r["sample_keys"])
        line += (
            f"; {r['missing']} missing, {r['extra']} extra, {r['differing']} differing;"
            f" first differing range {bounds}; keys {keys}"
        )
    return line


def _bound(value: Any) -> str:
    return "open" if value is None else json.dumps(value)


def _id(job: dict[str, Any]) -> tuple[str, str, float]:
    return job["source"], job["table"], job["started_at"]


def _line(job: dict[str, Any]) -> str:
    took = (job["finished_at"] or time.time()) - job["started_at"]
    rows = f"{job['rows']:,} of ~{job['estimate']:,} rows, chunk {job['chunks_done']}/{job['chunks']}"
    error = f": {job['error']}" if job["error"] else ""
    return f"{job['source']} {job['table']}: {job['state']}, {rows}, {took:.0f} s{error}"
