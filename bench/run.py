"""``python -m bench.run [--quick]``: the whole benchmark, ours then the baseline, one report.

Each flavour runs in its production shape on its own database and Redis db number: daphne
process(es) on PostgreSQL and Redis (ours also with ``manage.py botworker``). Phases per flavour:
a throughput ramp per room size, two fixed light loads, the echo-bot round trip (ours), then
idle connections on a fresh daphne. Results go to bench/results/<time>.json and the table in
docs/performance.md. Any lost or duplicated message of ours fails the run (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from . import profile, report, servers
from .idle import Holders
from .load import Clients, Stats, Target, percentiles

BUDGET_MS = 50.0
OURS_DB, BASE_DB = "chatroom_bench", "chatroom_bench_baseline"
OURS_REDIS, BASE_REDIS = "redis://127.0.0.1:6379/11", "redis://127.0.0.1:6379/12"
ROOM_SIZES = (2, 10, 50, 200)
CONNECTIONS = 200  # sockets per room-size phase: rooms = CONNECTIONS // N
LIGHT = {10: 10.0, 200: 20.0}  # fixed loads (N: msgs/s) reported beside the ramp
ECHO_ROOMS, ECHO_RATE = 5, 10.0
IDLE_ROOM = 10  # humans per room in the idle phase


def log(*parts: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


# ---- the servers ---------------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_NAME"}}
    env.update({"PYTHONUNBUFFERED": "1", "DEBUG": "0", "SECRET_KEY": "bench-" + "x" * 50})
    # Persistent database connections (both flavours), as chatroom's default on PostgreSQL:
    # with Django's default of 0 every database_sync_to_async call opens a new PostgreSQL
    # connection, with a maximum age the first call after it does. BENCH_CONN_MAX_AGE=0 (or
    # seconds) to compare.
    env["DB_CONN_MAX_AGE"] = os.environ.get("BENCH_CONN_MAX_AGE", "none")
    return env


def ours_env() -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatroom.settings",
            "DATABASE_URL": f"{servers.PG}/{OURS_DB}",
            "REDIS_URL": OURS_REDIS,
            "CHANNEL_PREFIX": "bench",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CHAT_VAR_DIR": str(Path(tempfile.gettempdir()) / "chatroom-bench-var"),
            # The per-participant limits are for people; the bench sends as fast as it is told.
            "CHAT_LIMITS": json.dumps({"RATE_LIMIT_MESSAGES": 10**9, "FRAME_RATE": 10**6, "FRAME_BURST": 10**6}),
        }
    )
    return env


def baseline_env() -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.baseline.settings",
            "DATABASE_URL": f"{servers.PG}/{BASE_DB}",
            "REDIS_URL": BASE_REDIS,
        }
    )
    return env


class Flavour:
    """One server flavour: set up its database, start and stop its processes."""

    def __init__(self, kind: str, daphnes: int) -> None:
        self.kind = kind
        self.daphnes = daphnes
        self.env = ours_env() if kind == "ours" else baseline_env()
        self.asgi = "chatroom.asgi:application" if kind == "ours" else "bench.baseline.asgi:application"
        self.procs: list[servers.Proc] = []
        self.ports: list[int] = []

    def prepare(self) -> None:
        servers.fresh_database(OURS_DB if self.kind == "ours" else BASE_DB)
        servers.flush_redis(self.env["REDIS_URL"])
        if self.kind == "ours":
            servers.run([sys.executable, "manage.py", "migrate", "--noinput"], self.env)
        else:
            servers.run([sys.executable, "-m", "django", "migrate", "--run-syncdb", "--noinput"], self.env)

    def start(self, daphnes: int | None = None, worker: bool = True) -> None:
        for i in range(daphnes or self.daphnes):
            module = "chatroom.serve" if self.kind == "ours" else "daphne"
            proc, port = servers.daphne(f"{self.kind}-daphne-{i}", self.asgi, self.env, module)
            self.procs.append(proc)
            self.ports.append(port)
        if self.kind == "ours" and worker:
            cmd = [sys.executable, "manage.py", "botworker"]
            self.procs.append(servers.start(f"{self.kind}-botworker", cmd, self.env, "ready"))

    def stop(self) -> list[str]:
        """Stop the processes; return the error lines of their logs."""
        errors = [f"{p.name}: {line.rstrip()}" for p in self.procs for line in p.tracebacks()]
        for proc in self.procs:
            servers.stop(proc)
        self.procs, self.ports = [], []
        return errors

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def seed(self, plan: list[dict]) -> list[list[dict]]:
        if self.kind != "ours":  # the baseline's rooms are just names
            return [[{"id": f"r{i}-{r}"} for r in range(e["count"])] for i, e in enumerate(plan)]
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            servers.run([sys.executable, "-m", "bench.seed", json.dumps(plan), out.name], self.env, timeout=600)
            return json.loads(Path(out.name).read_text())

    def count_rows(self) -> dict[str, int]:
        url = self.env["DATABASE_URL"]
        with psycopg.connect(url) as conn:
            if self.kind != "ours":
                return {"human": conn.execute("SELECT count(*) FROM baseline_chatmessage").fetchone()[0], "bot": 0}
            rows = conn.execute(
                "SELECT p.kind, count(*) FROM conversations_message m JOIN conversations_participant p"
                " ON p.id = m.sender_id WHERE m.text LIKE 'BENCH %%' GROUP BY p.kind"
            ).fetchall()
        return {"human": 0, "bot": 0, **dict(rows)}


# ---- phases ----------------------------------------------------------------------------------------


async def step(
    clients: Clients, flavour: Flavour, rate: float, seconds: float, n: int, senders=None, echo: bool = False
) -> dict[str, Any]:
    """Send at ``rate`` for ``seconds``, wait for every delivery; the step's figures."""
    clients.stats = Stats()
    cpu0 = servers.cpu_seconds(flavour.pids)
    took = await clients.drive(rate, seconds, senders)
    s = clients.stats
    expected = s.sent * (n - 1)
    drained = await clients.drain(expected, s.sent * 2 if echo else 0, acks=flavour.kind == "ours", limit=60)
    cpu = servers.cpu_seconds(flavour.pids) - cpu0
    deliveries = s.delivered + s.echoes
    lat = percentiles(s.latencies)
    result = {
        "n": n,
        "offered_msgs_per_s": rate,
        "sent": s.sent,
        "send_seconds": round(took, 3),
        "msgs_per_s": round(s.sent / took, 1),
        "deliveries_per_s": round(s.delivered / took, 1),
        "expected_deliveries": expected,
        "delivered": s.delivered,
        "lost": expected - s.delivered,
        "acks": s.acks,
        "errors": len(s.errors),
        "first_error": s.errors[:1],
        "drained": drained,
        **lat,
        "cpu_s": round(cpu, 3),
        "cpu_us_per_delivery": round(cpu * 1e6 / deliveries, 1) if deliveries else None,
    }
    if echo:
        result.update({"echoes": s.echoes, "expected_echoes": s.sent * 2, "echo": percentiles(s.echo_latencies)})
        result["lost"] += s.sent * 2 - s.echoes
    if flavour.kind == "ours":
        result["lost"] += max(0, s.sent - s.acks)
    result["passed"] = bool(
        drained
        and result["lost"] == 0
        and not s.errors
        and lat["p99_ms"] is not None
        and lat["p99_ms"] <= BUDGET_MS
        and took <= seconds * 1.1 + 0.2
    )
    return result


async def size_phase(flavour: Flavour, rooms: list[dict], n: int, opts: argparse.Namespace) -> dict[str, Any]:
    """Connect every member of ``rooms``; a fixed light load if any, then the ramp."""
    clients = Clients(Target(flavour.kind, flavour.ports))
    connect_s = await clients.connect(rooms, n)
    await asyncio.to_thread(servers.wait_idle_cpu, flavour.pids)
    out: dict[str, Any] = {"rooms": len(rooms), "connections": len(clients.conns), "connect_s": round(connect_s, 2)}
    out["connect_retries"] = clients.retries
    try:
        if opts.profile and n == opts.profile_n:
            profile.start(flavour, opts.profile, f"{flavour.kind}-n{n}")
        if n in LIGHT:
            out["light"] = await step(clients, flavour, LIGHT[n], opts.light_seconds, n)
            log(f"  {flavour.kind} N={n} light {LIGHT[n]:g} msg/s:", _brief(out["light"]))
        rate = max(2.0, min(10.0, 400.0 / (n - 1)))
        steps = []
        for _ in range(opts.max_steps):
            result = await step(clients, flavour, rate, opts.step_seconds, n)
            steps.append(result)
            log(f"  {flavour.kind} N={n} {rate:.0f} msg/s:", _brief(result))
            if not result["passed"] or result["lost"]:
                break
            await asyncio.to_thread(servers.wait_idle_cpu, flavour.pids, 0.2, 5)
            rate *= opts.factor
        failed = steps[-1]
        if not failed["passed"] and not failed["lost"] and len(steps) > 1:
            # One step between the last that passed and the one that failed (geometric mean):
            # a 1.5x ramp alone reports up to a third less than the size can take.
            await asyncio.to_thread(servers.wait_idle_cpu, flavour.pids, 0.2, 10)
            between = (steps[-2]["offered_msgs_per_s"] * failed["offered_msgs_per_s"]) ** 0.5
            result = await step(clients, flavour, between, opts.step_seconds, n)
            steps.append(result)
            log(f"  {flavour.kind} N={n} {between:.0f} msg/s (between):", _brief(result))
        passed = [s for s in steps if s["passed"]]
        out["steps"] = steps
        out["best"] = max(passed, key=lambda s: s["offered_msgs_per_s"]) if passed else None
        out["lost"] = sum(s["lost"] for s in steps) + sum(x["lost"] for x in [out.get("light")] if x)
        out["sent"] = sum(s["sent"] for s in steps) + sum(x["sent"] for x in [out.get("light")] if x)
    finally:
        await clients.close()
        await asyncio.to_thread(servers.wait_idle_cpu, flavour.pids)
    return out


async def echo_phase(flavour: Flavour, rooms: list[dict], opts: argparse.Namespace) -> dict[str, Any]:
    """Two humans and the echo bot per room: human -> bot -> both humans."""
    clients = Clients(Target("ours", flavour.ports))
    await clients.connect(rooms, 2)
    await asyncio.to_thread(servers.wait_idle_cpu, flavour.pids)
    try:
        warm = await clients.warm(len(rooms) * 2)
        await asyncio.to_thread(servers.wait_idle_cpu, flavour.pids)
        result = await step(clients, flavour, ECHO_RATE, opts.light_seconds, 2, echo=True)
    finally:
        await clients.close()
    result["first_echo"] = {**percentiles(warm), "rooms": len(rooms), "echoes": len(warm)}
    result["lost"] += len(rooms) * 2 - len(warm)  # a warm-up echo that never came is lost too
    log("  ours echo:", _brief(result), "echo", result["echo"], "first echo per room", result["first_echo"])
    return result


def _brief(r: dict[str, Any]) -> str:
    return (
        f"{r['msgs_per_s']} msg/s, {r['deliveries_per_s']} del/s, p50 {r['p50_ms']} p99 {r['p99_ms']} max "
        f"{r['max_ms']} ms, {r['cpu_us_per_delivery']} us CPU/del, lost {r['lost']}, "
        f"{'pass' if r['passed'] else 'FAIL'}"
    )


async def idle_phase(flavour: Flavour, rooms: list[dict], stages: list[int]) -> dict[str, Any]:
    """Hold idle sockets on one fresh daphne; RSS growth per socket at each stage."""
    target = Target(flavour.kind, flavour.ports[:1])
    urls = [target.url(room, m, 0) for m in range(IDLE_ROOM) for room in rooms]
    pid = flavour.procs[0].pid
    warm = Clients(target)  # load the code paths before the first reading
    await warm.connect(rooms[:2], 5)
    await warm.close()
    await asyncio.to_thread(servers.wait_idle_cpu, flavour.pids)
    rss0 = servers.rss_kb(pid)
    holders = Holders(target.origin)
    out: dict[str, Any] = {"rss_before_kb": rss0, "stages": []}
    held = 0
    try:
        for total in stages:
            got = await asyncio.to_thread(holders.add, urls[held:total], max(1, (total - held) // 2500 + 1))
            held += got["held"]
            await asyncio.to_thread(servers.wait_idle_cpu, flavour.pids, 0.5, 30)
            rss = servers.rss_kb(pid)
            stage = {**got, "connections": held, "rss_kb": rss, "kb_per_conn": round((rss - rss0) / max(held, 1), 1)}
            out["stages"].append(stage)
            log(f"  {flavour.kind} idle {held} sockets: {stage['kb_per_conn']} KB each, {got['connects_per_s']}/s")
            if got["failures"]:
                log("   failures:", got["failures"], got["first_failure"])
                break
    finally:
        await asyncio.to_thread(holders.close)
    return out


# ---- the run -------------------------------------------------------------------------------------


def run_flavour(kind: str, opts: argparse.Namespace) -> dict[str, Any]:
    flavour = Flavour(kind, opts.daphnes)
    out: dict[str, Any] = {"loadavg_start": os.getloadavg(), "daphnes": opts.daphnes}
    log(f"{kind}: preparing database and seeding")
    flavour.prepare()
    plan = [{"count": max(1, CONNECTIONS // n), "humans": n} for n in opts.sizes]
    plan.append({"count": ECHO_ROOMS, "humans": 2, "bots": ["echo"]})
    plan.append({"count": max(opts.idle, default=0) // IDLE_ROOM, "humans": IDLE_ROOM})
    seeded = flavour.seed(plan)
    servers.checkpoint()  # the seeding's writes (and any before the run) flushed before the steps
    errors: list[str] = []
    try:
        flavour.start()
        out["sizes"] = {}
        for n, rooms in zip(opts.sizes, seeded, strict=False):
            out["sizes"][str(n)] = asyncio.run(size_phase(flavour, rooms, n, opts))
        sent = sum(s["sent"] for s in out["sizes"].values())
        if kind == "ours":
            out["echo"] = asyncio.run(echo_phase(flavour, seeded[len(opts.sizes)], opts))
            sent += out["echo"]["sent"]
        rows = flavour.count_rows()
        out["rows"] = {**rows, "sent": sent, "echo_sent": out.get("echo", {}).get("sent", 0)}
        out["rows"]["missing"] = sent - rows["human"] + (out["rows"]["echo_sent"] - rows["bot"])
        errors += flavour.stop()
        if opts.idle:
            log(f"{kind}: idle connections")
            flavour.start(daphnes=1, worker=False)
            out["idle"] = asyncio.run(idle_phase(flavour, seeded[-1], opts.idle))
    finally:
        errors += flavour.stop()
    out["server_errors"] = errors[:20]
    out["lost"] = sum(s["lost"] for s in out["sizes"].values()) + out.get("echo", {}).get("lost", 0)
    out["loadavg_end"] = os.getloadavg()
    log(f"{kind}: rows {out['rows']}, lost {out['lost']}, server errors {len(errors)}")
    return out


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": sys.version.split()[0]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short steps, N=10 and 200, 1,000 idle (~2 min)")
    parser.add_argument("--only", choices=["ours", "baseline"], help="run one flavour only (no ratios)")
    parser.add_argument("--daphnes", type=int, default=1, help="daphne processes per flavour (default 1)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="room sizes, e.g. 2,10")
    parser.add_argument("--idle", type=lambda s: [int(x) for x in s.split(",") if x], help="idle stages")
    parser.add_argument("--label", default="", help="a word for the result file name")
    parser.add_argument("--profile", type=float, default=0, help="py-spy the servers for this many s of the ramp")
    parser.add_argument("--profile-n", type=int, default=10, help="the room size whose ramp is profiled")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    opts = parser.parse_args(argv)
    opts.step_seconds = 1.5 if opts.quick else 4.0
    opts.light_seconds = 3.0 if opts.quick else 6.0
    opts.factor = 2.0 if opts.quick else 1.5
    opts.max_steps = 10 if opts.quick else 16  # up to 5,120 / 4,378 msgs/s from 10: a ramp ends by failing
    opts.sizes = opts.sizes or ([10, 200] if opts.quick else list(ROOM_SIZES))
    opts.idle = opts.idle if opts.idle is not None else ([1000] if opts.quick else [1000, 10000])
    return opts


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when nothing of ours was lost, 1 otherwise, 130 when interrupted."""
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    servers.raise_nofile()
    started = datetime.datetime.now(datetime.UTC)
    result: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "quick": opts.quick,
        "budget_ms": BUDGET_MS,
        "step_seconds": opts.step_seconds,
        "machine": machine(),
    }
    failed = False
    try:
        for kind in ["ours", "baseline"] if opts.only is None else [opts.only]:
            result[kind] = run_flavour(kind, opts)
    except KeyboardInterrupt:
        log("interrupted; stopping every process the bench started")
        return 130
    finally:
        servers.stop_all()
    result["seconds"] = round((datetime.datetime.now(datetime.UTC) - started).total_seconds())
    ours = result.get("ours")
    if ours and (ours["lost"] or ours["rows"]["missing"]):
        log(f"FAIL: ours lost {ours['lost']} deliveries, {ours['rows']['missing']} rows missing")
        failed = True
    name = started.strftime("%Y%m%dT%H%M%S") + ("-quick" if opts.quick else "")
    name += f"-{opts.label}" if opts.label else ""
    path = Path(__file__).parent / "results" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    log(f"results: {path}")
    table = report.markdown(result)
    print(table)
    if not opts.no_docs:
        report.write_docs(table, path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        servers.stop_all()
