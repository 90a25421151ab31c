"""The benchmark's printed report: a few aligned tables from the results dict."""

from __future__ import annotations

from typing import Any


def _table(title: str, rows: list[tuple[str, str, str]]) -> list[str]:
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    out = ["", title, "-" * len(title)]
    out += [f"  {name:<{width}}  {value:>{vwidth}}  {note}".rstrip() for name, value, note in rows]
    return out


def _verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return f"target {'>=' if higher_is_better else '<='} {target:,.0f}: {'MET' if ok else 'MISSED'}"


def _initial_load(load: dict[str, Any], snapshot: dict[str, Any]) -> list[str]:
    """The copy path's rate, ClickHouse's postgresql() rate on the same table, their ratio."""
    ref = load["postgresql_function"]
    ok = load["ratio"] >= load["target_ratio"]
    chunks = f"{load['chunks']} chunk{'s' if load['chunks'] != 1 else ''}"
    cpu, ref_cpu = load["cpu_s"], ref["cpu_s"]
    rows = [
        (
            "copy path",
            f"{load['copy_rows_per_s']:,.0f} rows/s",
            f"copy began -> every row queryable in bench.bench_load {load['copy_s']:.1f} s ({chunks});"
            f" ClickHouse's merges of its parts ended {load.get('merges_settled_after_s', 0):.1f} s later",
        ),
        (
            "incl. bridge start",
            f"{load['rows_per_s_from_bridge_start']:,.0f} rows/s",
            f"Bridge.start() -> every row queryable {load['queryable_s']:.1f} s: start took "
            f"{load['bridge_start_s']:.1f} s, copy began at {load['copy_began_s']:.1f} s, first chunk copied at "
            f"{load['first_chunk_copied_s']:.1f} s, all at {load['all_chunks_copied_s']:.1f} s",
        ),
        (
            "postgresql()",
            f"{ref['rows_per_s']:,.0f} rows/s",
            f"INSERT INTO {ref['table']} (MergeTree) SELECT ... FROM postgresql(...): {ref['seconds']:.1f} s",
        ),
        (
            "ratio",
            f"{load['ratio']:.2f}x",
            f"copy path / postgresql(); target ≥ {load['target_ratio']}×: {'MET' if ok else 'MISSED'}"
            f" (incl. bridge start {load['ratio_incl_bridge_start']:.2f}x)",
        ),
    ]
    if snapshot.get("rows"):
        rows.append(
            (
                "Debezium's snapshot",
                f"{snapshot['rows_per_s']:,.0f} rows/s",
                f"the old path: the snapshot phase below ({snapshot['rows']:,} rows of bench_snapshot)",
            )
        )
    rows += [
        (
            "CPU seconds",
            "",
            f"copy path (after Bridge.start() returned): bridge {cpu['bridge']:.1f}, postgres {cpu['postgres']:.1f}; "
            f"postgresql(): bridge (chDB) {ref_cpu['bridge']:.1f}, postgres {ref_cpu['postgres']:.1f}",
        ),
        ("bridge process", f"{load['bridge_process_vmhwm_mb']:,.0f} MB", "VmHWM of the copy-path bridge's process"),
    ]
    return _table(
        f"Initial load ({load['rows']:,} rows of bench_load, filled in PostgreSQL in "
        f"{load['load_into_postgres_s']:.1f} s; the copy path vs ClickHouse's postgresql())",
        rows,
    )


def ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _peer(results: dict[str, Any]) -> list[str]:
    """This project against ClickHouse's MaterializedPostgreSQL on the same PostgreSQL and writers."""
    peer, t, lat = results["peer"], results["throughput"], results["latency"]
    r, idle = peer["ratios"], peer["bridge_idle"]
    runs = peer["throughput_runs"]
    w = peer["warmup"]
    rows = [
        (
            "throughput: this project",
            f"{t['end_to_end_rows_per_s']:,.0f} rows/s",
            "phase 3: first commit -> last row queryable",
        ),
        (
            "throughput: peer",
            f"{max(x['end_to_end_rows_per_s'] for x in runs):,.0f} rows/s",
            "best of "
            + ", ".join(f"{x['end_to_end_rows_per_s']:,.0f}" for x in runs)
            + f" (first commit -> count() reached {runs[0]['rows']:,}; warm-up {w['end_to_end_rows_per_s']:,.0f}"
            f" rows/s over {w['rows']:,} rows)",
        ),  # fmt: skip
        ("  ratio", ratio_text(r["throughput"]), "this project / peer (above 1: this project is faster)"),
    ]
    ours, theirs = lat["commit_to_queryable_ms"], peer["latency"]["commit_to_queryable_ms"]
    for q in ("p50", "p90", "p99", "max"):
        rows.append(
            (
                f"latency {q}",
                f"{ours[q]:,.0f} / {theirs[q]:,.0f} ms",
                f"this project / peer = {ratio_text(r['latency_' + q])} (below 1: this project is faster)",
            )
        )
    rows += [
        (
            "peer latency workload",
            f"{peer['latency']['achieved_rows_per_s']:,.0f} rows/s",
            f"{peer['latency']['late_transactions']} transactions sent late; per transaction: commit returned ->"
            " the peer's max(id) reached its last id (polled every 10 ms)",
        ),
        (
            "peer process",
            f"{peer['vmhwm_mb']:,.0f} MB",
            f"VmHWM (chDB with MaterializedPostgreSQL); {peer['cpu_s']:.1f} CPU-s over the phase, polls included",
        ),
        (
            "bridge, idle meanwhile",
            f"{idle['bridge_process_cpu_s']:.1f} CPU-s",
            f"over {idle['wall_s']:.0f} s (Tansu {idle['tansu_cpu_s']:.1f}); bench process VmRSS"
            f" {idle['bridge_process_vmrss_mb']:,.0f} MB",
        ),
        (
            "other processes",
            f"{peer.get('cpu_s_other_processes', 0):.1f} CPU-s",
            "over the phase, outside the bench (compare with phases 3 and 4 below: the sides ran at different"
            " moments of a shared machine)",
        ),
    ]
    return _table(
        "Peer: ClickHouse's MaterializedPostgreSQL (chDB, own process, own table bench_peer, same writers)", rows
    )


def _event_latency_rows(e: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The events lane at the same steady rate: commit -> event stored, and how far behind the mirror."""
    if not e:
        return []
    return [
        (
            "events: p50 / p99",
            f"{e['p50']:,.0f} / {e['p99']:,.0f} ms",
            f"commit -> event stored (stored_at - occurred_at), max {e['max']:,.0f} ms over {e['events']:,} events",
        ),
        (
            "events behind mirror",
            f"p50 {e['behind_mirror_p50']:,.0f} ms",
            f"max {e['behind_mirror_max']:,.0f} ms: an event's stored_at - its row's _ingested_at",
        ),
    ]


def _bridge_total_mb(m: dict[str, Any]) -> float:
    """What the bridge starts, each at its own peak (they need not peak together). PostgreSQL is the
    source: the bench starts it, as `cdc demo` does, but `cdc run` against a user's database does not."""
    parts = ("bridge_process_vmhwm", "events_worker_vmhwm", "tansu_vmhwm")
    return float(sum(m.get(k) or 0 for k in parts))


def _cpu_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for phase in ("snapshot", "throughput", "latency"):
        cpu = results.get(phase, {}).get("cpu")
        if not cpu:
            continue
        c = cpu["cpu_s"]
        parts = "  ".join(f"{k} {v:.1f}" for k, v in c.items())
        rows.append(
            (phase, f"{cpu['wall_s']:.1f} s wall", f"{parts}  other processes {cpu['cpu_s_other_processes']:.1f}")
        )
        threads = ", ".join(f"{n} {s:.1f}" for n, s in cpu["bridge_threads_cpu_s"].items())
        rows.append(("", "", f"bridge threads: {threads}"))
        b = cpu.get("batches")
        if b:
            rows.append(
                (
                    "",
                    "",
                    f"batches: Debezium {b['debezium_batches']:,} x {b['debezium_records_per_batch']:,.0f}"
                    f" records, consumer {b['consumer_batches']:,} x {b['consumer_messages_per_batch']:,.0f}"
                    " messages",
                )
            )
    return rows


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    targets = env["targets"]
    out = [
        f"cdc bench  {env['started_at']}  {env['cpus']} CPUs  events workers {env.get('events_workers', 1)}"
        f"  load average start {env['loadavg_start']}"
        f"  end {env.get('loadavg_end')}"
    ]
    s, t, lat = results["snapshot"], results["throughput"], results["latency"]
    if results.get("initial_load"):
        out += _initial_load(results["initial_load"], s)
    if s["rows"]:
        out += _table(
            "Snapshot by Debezium (the old initial-load path; rows present before the bridge started)",
            [
                ("rows", f"{s['rows']:,}", ""),
                (
                    "snapshot rate",
                    f"{s['rows_per_s']:,.0f} rows/s",
                    f"{s['seconds_after_start_returned']:.1f} s after Bridge.start() returned",
                ),
                (
                    "incl. bridge startup",
                    f"{s['rows_per_s_incl_startup']:,.0f} rows/s",
                    f"start took {s['bridge_start_s']:.1f} s",
                ),
            ],
        )
    e2e = t["end_to_end_rows_per_s"]
    ll = t["latency_under_load_ms"]
    warm = results.get("warmup")
    if warm:
        out += _table(
            f"Warm-up ({warm['rows']:,} rows streamed first, JVM cold)",
            [
                (
                    "end to end (cold)",
                    f"{warm['end_to_end_rows_per_s']:,.0f} rows/s",
                    f"first commit -> last row queryable {warm['end_to_end_s']:.1f} s; "
                    + _verdict(warm["end_to_end_rows_per_s"], targets["throughput_rows_per_s"], True),
                )
            ],
        )
    out += _table(
        f"Streaming throughput ({t['rows']:,} rows, {t['tx_size']} rows per transaction)",
        [
            (
                "end to end",
                f"{e2e:,.0f} rows/s",
                f"first commit -> last row queryable {t['end_to_end_s']:.1f} s; "
                + _verdict(e2e, targets["throughput_rows_per_s"], True),
            ),
            ("PostgreSQL writes", f"{t['source_rows_per_s']:,.0f} rows/s", "what the source took (the writer's pace)"),
            (
                "captured into Kafka",
                f"{t['captured_into_kafka_rows_per_s']:,.0f} rows/s",
                "first commit -> Debezium had all rows acked by the broker",
            ),
            ("drain after last commit", f"{t['drain_after_last_commit_s']:.1f} s", ""),
            (
                "domain events",
                f"{t['domain_events_rows_per_s']:,.0f} rows/s" if t.get("domain_events_rows_per_s") else "off",
                "first commit -> every change translated, published and stored (runs beside the mirror)",
            ),
            (
                "latency under this load",
                f"p50 {ll['p50']:,.0f} ms",
                f"p99 {ll['p99']:,.0f} ms, max {ll['max']:,.0f} ms",
            ),
        ],
    )
    q = lat["commit_to_queryable_ms"]
    out += _table(
        f"Latency at {lat['rate_rows_per_s']:,.0f} rows/s for {lat['seconds']:.0f} s "
        f"({lat['tx_rows']} rows per transaction; commit -> queryable = _ingested_at - _commit_ts)",
        [
            ("p50", f"{q['p50']:,.0f} ms", _verdict(q["p50"], targets["latency_p50_ms"], False)),
            ("p90", f"{q['p90']:,.0f} ms", ""),
            ("p99", f"{q['p99']:,.0f} ms", ""),
            ("max", f"{q['max']:,.0f} ms", f"avg {q['avg']:,.0f} ms over {q['rows']:,} rows"),
            (
                "achieved rate",
                f"{lat['achieved_rows_per_s']:,.0f} rows/s",
                f"{lat['late_transactions']} transactions sent late",
            ),
        ]
        + _event_latency_rows(lat.get("commit_to_event_stored_ms")),
    )
    if results.get("peer"):
        out += _peer(results)
    m = results.get("memory_peak_mb", {})
    if m:
        out += _table(
            "Peak memory",
            [
                ("bridge process", f"{m['bridge_process_vmhwm']:,.0f} MB", "VmHWM: Python + JVM (Debezium) + chDB"),
                (
                    "events worker",
                    f"{m.get('events_worker_vmhwm', 0):,.0f} MB",
                    "VmHWM of the domain-event worker process",
                ),
                ("Tansu broker", f"{m['tansu_vmhwm'] or 0:,.0f} MB", "VmHWM; topics are held in memory"),
                (
                    "PostgreSQL",
                    f"{m['postgres_total_pss_peak']:,.0f} MB",
                    f"peak sum of PSS over postmaster + {m['postgres_processes_peak'] - 1} children; postmaster VmHWM "
                    f"{m['postgres_postmaster_vmhwm']:,.0f} MB, largest child VmHWM "
                    f"{m['postgres_largest_child_vmhwm']:,.0f} MB",
                ),
                (
                    "all of the bridge's",
                    f"{_bridge_total_mb(m):,.0f} MB",
                    "bridge process + events worker + Tansu, each at its peak (an upper bound); target <= 1,500 MB",
                ),
            ]
            + (
                [
                    (
                        "peer process",
                        f"{results['peer']['vmhwm_mb']:,.0f} MB",
                        "VmHWM: chDB running MaterializedPostgreSQL",
                    )
                ]
                if results.get("peer")
                else []
            ),
        )
    out += _table("CPU seconds per phase (bridge = this process: Python, JVM, chDB)", _cpu_rows(results))
    return "\n".join(out)
