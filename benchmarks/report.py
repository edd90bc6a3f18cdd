"""The figures as a markdown table, a one-line note per run, and the chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Summary = Mapping[str, float | None]

ROWS: list[tuple[str, str, str, str]] = [
    # key, label, format, target (from issue 4)
    (
        "throughput_1_workflows_per_s",
        "Throughput, 1-activity workflows (workflows/s)",
        ",.0f",
        ">= 1,200",
    ),
    (
        "throughput_n_activities_per_s",
        "Throughput, 10-activity workflows (activities/s)",
        ",.0f",
        ">= 3,000",
    ),
    ("latency_median_ms", "Latency start to result, median (ms)", ".1f", "<= 3"),
    ("latency_p95_ms", "Latency start to result, p95 (ms)", ".1f", "<= 6"),
    ("timer_late_median_ms", "1 s timer: late after due, median (ms)", ".1f", "<= 5"),
    ("timer_late_p95_ms", "1 s timer: late after due, p95 (ms)", ".1f", ""),
    (
        "history_short_ms_per_activity",
        "History, 1 worker: ms per activity, {short:,} activities",
        ".2f",
        "",
    ),
    (
        "history_long_ms_per_activity",
        "History, 1 worker: ms per activity, {long:,} activities",
        ".2f",
        "",
    ),
    ("history_ratio", "History, 1 worker: {long:,} / {short:,} time per activity", ".2f", "<= 1.5"),
    (
        "shared_short_ms_per_activity",
        "History, {workers} workers: ms per activity, {short:,} activities",
        ".2f",
        "",
    ),
    (
        "shared_long_ms_per_activity",
        "History, {workers} workers: ms per activity, {shared:,} activities",
        ".2f",
        "",
    ),
    (
        "shared_ratio",
        "History, {workers} workers: {shared:,} / {short:,} time per activity",
        ".2f",
        "",
    ),
    (
        "shared_cache_miss_share",
        "History, {workers} workers: workflow tasks missing the cache",
        ".0%",
        "",
    ),
    ("instance_events", "Cached instance: history events replayed", ",.0f", ""),
    ("instance_kept_kib", "Cached instance: memory kept (KiB)", ",.0f", "reported"),
    ("replay_us_per_event", "Replay from history (us per event)", ".1f", ""),
    (
        "idle_queries_per_s",
        "Idle worker: queries/s (counted in the worker)",
        ".2f",
        "<= 1 (PostgreSQL)",
    ),
    ("idle_server_transactions_per_s", "Idle worker: transactions/s (pg_stat_database)", ".2f", ""),
    (
        "transactions_per_workflow_1",
        "Transactions per 1-activity workflow (pg_stat_database)",
        ".2f",
        "reported",
    ),
    (
        "counted_transactions_per_workflow_1",
        "Transactions per 1-activity workflow (counted)",
        ".2f",
        "reported",
    ),
    ("worker_transactions_per_workflow_1", "... of which by the workers", ".2f", ""),
    (
        "transactions_per_workflow_n",
        "Transactions per 10-activity workflow (pg_stat_database)",
        ".2f",
        "reported",
    ),
    (
        "counted_transactions_per_workflow_n",
        "Transactions per 10-activity workflow (counted)",
        ".2f",
        "reported",
    ),
    ("worker_transactions_per_workflow_n", "... of which by the workers", ".2f", ""),
    ("queries_per_workflow_1", "Queries per 1-activity workflow (counted)", ".2f", ""),
    ("queries_per_workflow_n", "Queries per 10-activity workflow (counted)", ".2f", ""),
    # The peers' harness cases: library defaults, the worker in the client's process (issue 16)
    (
        "peers_throughput_1_workflows_per_s",
        "Defaults, in-process: 2,000 1-activity workflows (workflows/s)",
        ",.0f",
        ">= 1.5x Absurd",
    ),
    (
        "peers_throughput_n_activities_per_s",
        "Defaults, in-process: 1,000 10-activity workflows (activities/s)",
        ",.0f",
        ">= 1.5x Absurd",
    ),
    (
        "peers_latency_median_ms",
        "Defaults, in-process: start to result, median (ms)",
        ".1f",
        "<= 3",
    ),
    (
        "peers_latency_p95_ms",
        "Defaults, in-process: start to result, p95 (ms)",
        ".1f",
        "<= 2x median",
    ),
    (
        "peers_latency_process_median_ms",
        "Defaults, worker in another process: start to result, median (ms)",
        ".1f",
        "<= 4",
    ),
    (
        "peers_latency_process_p95_ms",
        "Defaults, worker in another process: start to result, p95 (ms)",
        ".1f",
        "<= 2x median",
    ),
]


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def table(summary: Mapping[str, Summary], backends: list[str]) -> str:
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    lines = [
        "| Figure | " + " | ".join(names[b] for b in backends) + " | Target |",
        "| --- | " + " | ".join("---:" for _ in backends) + " | --- |",
    ]
    sizes = {
        name: int(next((v for b in backends if (v := summary[b].get(key)) is not None), 0))
        for name, key in (
            ("short", "history_short_activities"),
            ("long", "history_long_activities"),
            ("shared", "shared_long_activities"),
            ("workers", "shared_workers"),
        )
    }
    for key, label, fmt, target in ROWS:
        if all(summary[b].get(key) is None for b in backends):
            continue
        label = label.format(**sizes)
        cells = " | ".join(_cell(summary[b].get(key), fmt) for b in backends)
        lines.append(f"| {label} | {cells} | {target} |")
    return "\n".join(lines)


def brief(name: str, figures: Mapping[str, Any]) -> str:
    """One line on a run, while the suite goes."""
    if name.startswith(("throughput", "peers_throughput")):
        return (
            f"{figures['workflows']} workflows x {figures['steps']} in {figures['seconds']:.2f}s:"
            f" {figures['workflows_per_s']:,.0f} workflows/s,"
            f" {figures['activities_per_s']:,.0f} activities/s,"
            f" {figures.get('counted_transactions_per_workflow', 0):.2f} transactions/workflow"
        )
    if name in ("latency", "timer") or name.startswith("peers_latency"):
        return f"median {figures['median_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms"
    if name.startswith("history"):
        short, long, instance = figures["short"], figures["long"], figures["instance"]
        return (
            f"{short['ms_per_activity']:.2f} ms/activity ({short['activities']}),"
            f" {long['ms_per_activity']:.2f} ms/activity ({long['activities']}),"
            f" ratio {figures['ratio']:.2f}; instance {instance['kept_bytes'] / 1024:,.0f}"
            f" KiB after {instance['events']} events; cache hits/misses"
            f" {long['workers_counted']['cache_hits']}/{long['workers_counted']['cache_misses']}"
        )
    if name == "idle":
        return f"{figures['queries_per_s']:.2f} queries/s"
    return str(figures)


def chart(summary: Mapping[str, Summary], path: Path) -> bool:
    """Throughput and latency per backend, one PNG; False if matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(summary)
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    colors = {"sqlite": "#4c72b0", "postgres": "#dd8452"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    width = 0.8 / max(1, len(backends))

    groups = [
        ("throughput_1_workflows_per_s", "1-activity\nworkflows/s", 1200),
        ("throughput_n_activities_per_s", "10-activity\nactivities/s", 3000),
    ]
    _bars(left, backends, groups, summary, width, names, colors, "{:,.0f}")
    left.set_title("Throughput (higher is better)")
    left.set_ylabel("per second")

    groups = [
        ("latency_median_ms", "latency\nmedian", 3),
        ("latency_p95_ms", "latency\np95", 6),
        ("timer_late_median_ms", "1 s timer\nlate, median", 5),
    ]
    _bars(right, backends, groups, summary, width, names, colors, "{:,.1f}")
    right.set_title("Latency, ms (lower is better; log scale)")
    right.set_yscale("log")
    right.set_ylabel("milliseconds")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(backends), fontsize=9)
    fig.suptitle("tapeflow: median of runs; dashes are issue 4's targets", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _bars(
    axes: Any,
    backends: list[str],
    groups: Sequence[tuple[str, str, float]],
    summary: Mapping[str, Summary],
    width: float,
    names: Mapping[str, str],
    colors: Mapping[str, str],
    fmt: str,
) -> None:
    for index, backend in enumerate(backends):
        xs, ys = [], []
        for position, (key, _, _) in enumerate(groups):
            value = summary[backend].get(key)
            if value is not None:
                xs.append(position + (index - (len(backends) - 1) / 2) * width)
                ys.append(max(value, 0.01))
        bars = axes.bar(xs, ys, width, label=names[backend], color=colors[backend])
        axes.bar_label(bars, labels=[fmt.format(y) for y in ys], fontsize=7)
    for position, (_, _, target) in enumerate(groups):
        axes.hlines(target, position - 0.45, position + 0.45, colors="black", linestyles="dashed")
    axes.set_xticks(range(len(groups)), [label for _, label, _ in groups])
