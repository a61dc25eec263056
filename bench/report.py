"""The markdown table of a run (ours, baseline, ours / baseline), and its place in the docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def _get(data: dict | None, *path: Any) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(ours: Any, base: Any) -> str:
    if not isinstance(ours, int | float) or not isinstance(base, int | float) or not base:
        return "-"
    return f"{ours / base:.2f}x"


def rows(result: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(metric, ours, baseline) for every line of the table."""
    ours, base = result.get("ours"), result.get("baseline")
    out: list[tuple[str, Any, Any]] = []
    sizes = sorted({int(n) for flavour in (ours, base) if flavour for n in flavour.get("sizes", {})})
    for n in sizes:
        best = [_get(f, "sizes", str(n), "best") for f in (ours, base)]
        budget = f"{result['budget_ms']:g}"
        out.append((f"N={n}: persisted msgs/s at p99 <= {budget} ms", *[_get(b, "msgs_per_s") for b in best]))
        out.append((f"N={n}: deliveries/s at that rate", *[_get(b, "deliveries_per_s") for b in best]))
        out.append((f"N={n}: p50 / p99 ms at that rate", *[_pair(b) for b in best]))
        out.append((f"N={n}: server CPU us per delivery at that rate", *[_get(b, "cpu_us_per_delivery") for b in best]))
    for n, rate in (("10", 10), ("200", 20)):
        light = [_get(f, "sizes", n, "light") for f in (ours, base)]
        if any(light):
            out.append((f"N={n} at {rate} msg/s: send -> all p50 / p99 / max ms", *[_triple(x) for x in light]))
    echo = _get(ours, "echo", "echo")
    if echo:
        out.append(("human -> echo bot -> humans p50 / p99 / max ms", _triple(echo), None))
    first = _get(ours, "echo", "first_echo")
    if first:
        cold = f"{_fmt(first['p50_ms'])} / {_fmt(first['max_ms'])}"
        out.append(("a room's first echo (the bot cold) p50 / max ms", cold, None))
    for i, stage in enumerate(_get(ours, "idle", "stages") or _get(base, "idle", "stages") or []):
        idle = [(_get(f, "idle", "stages") or [None] * (i + 1))[i] if f else None for f in (ours, base)]
        conns = stage["connections"]
        out.append((f"idle: KB per connection at {conns:,}", *[_get(x, "kb_per_conn") for x in idle]))
        out.append((f"idle: connects/s (to {conns:,})", *[_get(x, "connects_per_s") for x in idle]))
    out.append(("lost deliveries (whole run)", _get(ours, "lost"), _get(base, "lost")))
    out.append(("rows missing (whole run)", _get(ours, "rows", "missing"), _get(base, "rows", "missing")))
    return out


def _pair(best: dict | None) -> str | None:
    return None if not best else f"{_fmt(best['p50_ms'])} / {_fmt(best['p99_ms'])}"


def _triple(lat: dict | None) -> str | None:
    return None if not lat else f"{_fmt(lat['p50_ms'])} / {_fmt(lat['p99_ms'])} / {_fmt(lat['max_ms'])}"


def markdown(result: dict[str, Any]) -> str:
    """The table with the run's context (machine, load average, duration)."""
    m = result["machine"]
    loads = [
        f"{kind} {_get(result, kind, 'loadavg_start')[0]:.2f} -> {_get(result, kind, 'loadavg_end')[0]:.2f}"
        for kind in ("ours", "baseline")
        if result.get(kind)
    ]
    lines = [
        f"Run {result['started']} ({'quick' if result['quick'] else 'full'}, {result['seconds']} s, "
        f"steps of {result['step_seconds']:g} s) on {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}; "
        f"1-minute load average at start -> end: {', '.join(loads)}.",
        "",
        "| metric | ours | stock Channels | ours / baseline |",
        "|---|---:|---:|---:|",
    ]
    for name, ours, base in rows(result):
        better_low = not any(rate in name for rate in ("msgs/s", "deliveries/s", "connects/s"))
        ratio = _ratio(ours, base)
        if better_low and ratio != "-":
            ratio += " (lower is better)"
        lines.append(f"| {name} | {_fmt(ours)} | {_fmt(base)} | {ratio} |")
    return "\n".join(lines) + "\n"


def write_docs(table: str, result_file: str) -> None:
    """Put the table between the markers of docs/performance.md (the rest is left alone)."""
    block = f"{BEGIN}\n<!-- written by `make bench` from bench/results/{result_file} -->\n{table}{END}"
    text = DOCS.read_text() if DOCS.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    DOCS.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
