"""Start and stop the server processes under test, and read their CPU and memory from /proc.

Every process the bench starts is registered in ``STARTED`` and stopped by ``stop_all`` (called
from ``finally`` and at exit), so a failure or Ctrl-C leaves nothing running.
"""

from __future__ import annotations

import atexit
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTED: list[subprocess.Popen] = []
LOGS = ROOT / "bench" / "results" / "logs"  # the server processes' output of the last run


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> str:
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return out.stdout


def fresh_database(name: str) -> str:
    """Drop and create a database on the local PostgreSQL; return its URL."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


def checkpoint() -> None:
    """Write PostgreSQL's dirty buffers out now, not during the first steps: the seeding's
    rows, and whatever ran before the bench (test suites create and drop databases), would
    make a checkpoint flush them while the light loads measure commits. (docs/performance.md,
    fourteenth pass: a run started just after both suites measured its light load at 10.3 ms
    p50, one two minutes later 6.0.)"""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


@dataclass
class Proc:
    """One server process with its log (kept in memory, the last lines shown on failure)."""

    name: str
    popen: subprocess.Popen
    log: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tracebacks(self) -> list[str]:
        return [line for line in self.log if "Traceback" in line or " ERROR " in line]


def start(name: str, cmd: list[str], env: dict[str, str], ready: str, timeout: float = 60) -> Proc:
    """Start a process in its own session; return once its log shows ``ready``."""
    popen = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C reaches the bench, which stops it in order
    )
    STARTED.append(popen)
    proc = Proc(name, popen)
    event = threading.Event()

    LOGS.mkdir(parents=True, exist_ok=True)
    logfile = (LOGS / f"{name}.log").open("w")

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            logfile.write(line)
            if len(proc.log) < 5000:
                proc.log.append(line)
            if ready in line:
                event.set()
        event.set()
        logfile.close()

    threading.Thread(target=pump, daemon=True).start()
    if not event.wait(timeout) or popen.poll() is not None:
        stop(proc)
        raise RuntimeError(f"{name} did not start:\n" + "".join(proc.log[-40:]))
    return proc


def daphne(name: str, asgi: str, env: dict[str, str], module: str = "daphne") -> tuple[Proc, int]:
    """``module``: ``daphne`` (stock) or ``chatroom.serve`` (daphne on uvloop, ours)."""
    port = free_port()
    cmd = [sys.executable, "-m", module, "-b", "127.0.0.1", "-p", str(port), asgi]
    return start(name, cmd, env, "Listening on TCP address"), port


def stop(proc: Proc | subprocess.Popen, wait: float = 10) -> None:
    popen = proc.popen if isinstance(proc, Proc) else proc
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(wait)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    if popen in STARTED:
        STARTED.remove(popen)


def stop_all() -> None:
    for popen in list(STARTED):
        stop(popen)


atexit.register(stop_all)


def wait_idle_cpu(pids: list[int], settle: float = 0.3, limit: float = 15) -> None:
    """Wait until the processes stop burning CPU (background work of the previous phase)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pids)
        time.sleep(settle)
        if cpu_seconds(pids) - before < settle * 0.05:
            return
