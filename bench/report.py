"""Write a run's results: the JSON with everything, a markdown table, and a PNG chart."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import FIGURES_BY_KEY

NOT_APPLICABLE = "–"


@dataclass(frozen=True)
class ResultPaths:
    json: Path
    markdown: Path
    chart: Path


def result_stem(results: dict[str, Any]) -> str:
    """``<date>-<host>``, and ``-quick`` for a quick run so it never replaces a full one."""
    stem = f"{results['date']}-{results['machine']['host']}"
    return stem if results["mode"] == "full" else f"{stem}-{results['mode']}"


def write_results(results: dict[str, Any], directory: Path) -> ResultPaths:
    directory.mkdir(parents=True, exist_ok=True)
    stem = result_stem(results)
    paths = ResultPaths(directory / f"{stem}.json", directory / f"{stem}.md", directory / f"{stem}.png")
    paths.json.write_text(json.dumps(results, indent=2) + "\n")
    paths.markdown.write_text(markdown_report(results, chart_name=paths.chart.name))
    draw_chart(results, paths.chart)
    return paths


def fmt(value: float | None) -> str:
    """A figure with as many digits as it is worth, or a dash when it does not apply."""
    if value is None:
        return NOT_APPLICABLE
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def fmt_ratio(value: float | None) -> str:
    return NOT_APPLICABLE if value is None else f"×{fmt(value)}"


def cell(system: dict[str, Any], key: str) -> str:
    """median (min–max), or just the median after a single trial."""
    summary = system["figures"].get(key)
    if summary is None:
        return NOT_APPLICABLE
    if fmt(summary["min"]) == fmt(summary["max"]):
        return fmt(summary["median"])
    return f"{fmt(summary['median'])} ({fmt(summary['min'])}–{fmt(summary['max'])})"


def median(system: dict[str, Any], key: str) -> float | None:
    summary = system["figures"].get(key)
    return None if summary is None else summary["median"]


def ratio_to_raw(system: dict[str, Any], key: str) -> float | None:
    summary = system["figures"].get(key)
    return None if summary is None else summary.get("ratio_to_raw_redis")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def column(key: str) -> str:
    figure = FIGURES_BY_KEY[key]
    return figure.label if figure.unit == "x" else f"{figure.label} ({figure.unit})"


def with_unit(value: float, unit: str) -> str:
    return f"×{fmt(value)}" if unit == "x" else f"{fmt(value)} {unit}"


def commands_text(commands: dict[str, float]) -> str:
    if not commands:
        return "none"
    return ", ".join(f"{name} {fmt(count)}" for name, count in commands.items())


def describe_run(results: dict[str, Any]) -> list[str]:
    machine, plan = results["machine"], results["plan"]
    libraries = ", ".join(f"{name} {version}" for name, version in machine["libraries"].items())
    return [
        f"{results['mode'].capitalize()} run on {results['started_at']}, {results['duration_s']:.0f} s: "
        f"{plan['trials']} trial(s) per system, interleaved; per trial {plan['drain_jobs']} jobs drained, "
        f"{plan['latency_jobs']} sent {plan['latency_spacing_s'] * 1000:.0f} ms apart for the idle latency, "
        f"GET /ping at {plan['api_rate_per_s']:.0f}/s in windows of {plan['api_window_s']:g} s.",
        "",
        f"Machine: {machine['cpu_model']}, nproc {machine['nproc']}, {machine['memory_gb']} GB RAM, "
        f"{machine['os']}; load average at start {machine['load_average_at_start']}.",
        f"Python {machine['python']}, Redis server {machine['redis_server']} ({results['redis']}).",
        f"Libraries: {libraries}.",
    ]


def markdown_report(results: dict[str, Any], *, chart_name: str | None = None) -> str:
    systems = results["systems"]
    lines = [f"# Background jobs benchmark, {results['date']}, {results['machine']['host']}", ""]
    lines += describe_run(results)
    lines += [
        "",
        "Each cell: median (min–max) over the trials. "
        f"{NOT_APPLICABLE}: does not apply (BackgroundTasks has no broker, no enqueue call and no worker boot).",
        "",
        "## Producer and worker",
        "",
    ]
    keys = ["enqueue_rate", "enqueue_p50_ms", "enqueue_p99_ms", "drain_rate", "boot_s", "peak_rss_mb"]
    lines += table(["system", *map(column, keys)], [[s["label"], *(cell(s, k) for k in keys)] for s in systems])
    lines += ["", "## Latency and API impact", ""]
    keys = ["idle_latency_p50_ms", "idle_latency_p99_ms", "api_idle_p99_ms", "api_busy_p99_ms", "api_impact"]
    lines += table(["system", *map(column, keys)], [[s["label"], *(cell(s, k) for k in keys)] for s in systems])
    lines += [
        "",
        "## Redis commands per job",
        "",
        "Counted by Redis itself (INFO commandstats), without the one RPUSH the no-op task records itself with.",
        "",
    ]
    rows = [
        [
            s["label"],
            cell(s, "enqueue_commands"),
            cell(s, "processing_commands"),
            commands_text(s["commands_per_job"].get("enqueue", {})),
            commands_text(s["commands_per_job"].get("processing", {})),
        ]
        for s in systems
    ]
    lines += table(
        ["system", "per enqueue", "per job processed", "enqueue, by command", "processing, by command"], rows
    )
    lines += ["", "## Ratio to raw Redis, same run (medians)", ""]
    keys = [
        "enqueue_rate",
        "enqueue_p99_ms",
        "drain_rate",
        "boot_s",
        "enqueue_commands",
        "processing_commands",
        "idle_latency_p99_ms",
        "api_impact",
        "peak_rss_mb",
    ]
    header = ["system", *(FIGURES_BY_KEY[key].label for key in keys)]
    lines += table(header, [[s["label"], *(fmt_ratio(ratio_to_raw(s, k)) for k in keys)] for s in systems])
    lines += ["", "## Settings", "", results["fairness"], ""]
    lines += [f"- **{s['label']}**: {s['settings']}." for s in systems]
    checked = sum(s["jobs_checked"] for s in systems)
    lines += ["", f"Every job ran exactly once: {checked:,} jobs checked, none lost, none duplicated."]
    if chart_name:
        lines += ["", f"![Ratios to raw Redis]({chart_name})"]
    return "\n".join(lines) + "\n"


# The chart: one panel per figure, bars of the ratio to raw Redis on a log scale.
CHART_PANELS = (
    ("drain_rate",),
    ("enqueue_rate",),
    ("idle_latency_p99_ms",),
    ("api_impact",),
    ("enqueue_commands", "processing_commands"),
    ("boot_s",),
    ("peak_rss_mb",),
    ("enqueue_p99_ms",),
)
FAMILY_COLOURS = {
    "raw": "#7f7f7f",
    "celery": "#2ca02c",
    "rq": "#d62728",
    "dramatiq": "#9467bd",
    "background": "#1f77b4",
}


def panel_values(system: dict[str, Any], keys: tuple[str, ...]) -> tuple[float, float, float] | None:
    """(median, min, max) of a figure, or of the sum of several; None when it does not apply."""
    summaries = [system["figures"].get(key) for key in keys]
    present = [summary for summary in summaries if summary is not None]
    if not present:
        return None
    return tuple(sum(summary[part] for summary in present) for part in ("median", "min", "max"))  # type: ignore[return-value]


def panel_title(keys: tuple[str, ...]) -> str:
    figure = FIGURES_BY_KEY[keys[0]]
    label = "Redis commands per job (enqueue + processing)" if len(keys) > 1 else figure.label
    better = "higher" if figure.higher_is_better else "lower"
    return f"{label}\n{better} is better"


def set_decade_limits(axis: Any, ratios: list[float], *, labels_on_left: bool) -> None:
    """Whole decades around the data, one more for the value labels; "×0.1"-style ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low = math.floor(math.log10(min(ratios))) - (1 if labels_on_left else 0)
    high = math.ceil(math.log10(max(ratios))) + 1
    axis.set_xlim(10.0**low, 10.0**high)
    axis.xaxis.set_major_locator(LogLocator(base=10))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"×{value:g}"))
    axis.xaxis.set_minor_formatter(NullFormatter())


def draw_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no window: works over SSH and in CI
    import matplotlib.pyplot as plt

    systems = results["systems"]
    reference = next((s for s in systems if s["name"] == "raw-redis"), None)
    labels = [s["label"] for s in systems]
    positions = list(range(len(systems)))
    figure, axes = plt.subplots(2, 4, figsize=(18, 9), sharey=True)
    for axis, keys in zip(axes.flat, CHART_PANELS, strict=True):
        unit = FIGURES_BY_KEY[keys[0]].unit
        raw = panel_values(reference, keys) if reference else None
        axis.set_title(panel_title(keys), fontsize=10)
        axis.set_xscale("log")
        axis.axvline(1, color="black", linewidth=0.8, linestyle="--")
        axis.grid(axis="x", which="both", alpha=0.3)
        plotted: list[float] = [1.0]
        labels_on_left = False
        for position, system in zip(positions, systems, strict=True):
            values = panel_values(system, keys)
            if values is None or raw is None or raw[0] <= 0:
                axis.text(1, position, " n/a", va="center", fontsize=8, color="grey")
                continue
            middle, low, high = (value / raw[0] for value in values)
            plotted += [low, high] if middle > 0 else []
            text = " " + with_unit(values[0], unit)
            if middle <= 0:
                axis.text(1, position, text + " (no broker)", va="center", fontsize=8)
                continue
            colour = FAMILY_COLOURS.get(system["name"].split("-")[0], "#333333")
            # From the reference line at 1 to the ratio: right of it is more than raw Redis, left is less.
            axis.barh(position, middle - 1, left=1, color=colour, alpha=0.85, height=0.7)
            axis.errorbar(
                middle, position, xerr=[[middle - low], [high - middle]], fmt="none", ecolor="black", capsize=2
            )
            # The label goes beyond the whisker, on the side the bar grows to.
            if middle < 1:
                labels_on_left = True
                axis.text(min(low, middle), position, text.strip() + " ", va="center", ha="right", fontsize=8)
            else:
                axis.text(max(high, middle), position, text, va="center", fontsize=8)
        axis.set_xlabel("× raw Redis (log scale)", fontsize=9)
        set_decade_limits(axis, plotted, labels_on_left=labels_on_left)
    axes[0][0].set_yticks(positions, labels)
    axes[1][0].set_yticks(positions, labels)
    axes[0][0].invert_yaxis()
    machine = results["machine"]
    figure.suptitle(
        f"Background jobs on {machine['cpu_model']}, {machine['nproc']} CPUs, Python {machine['python']}, "
        f"Redis {machine['redis_server']} — {results['mode']} run {results['date']}\n"
        "bars: median ratio to raw Redis in the same run (1 = the dashed line); whiskers: min–max; "
        "label: the measured median",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
