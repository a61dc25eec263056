"""Idle connections: hold thousands of sockets from several client processes.

Each holder process opens its share of URLs (a bounded number in flight), reports how many it
holds and when it started and finished, then keeps them open until told to close them.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

import websockets

from .servers import raise_nofile

IN_FLIGHT = 16  # per holder process


def _hold(urls: list[str], origin: str, report: Any, close: Any) -> None:
    raise_nofile()
    asyncio.run(_hold_async(urls, origin, report, close))


async def _hold_async(urls: list[str], origin: str, report: Any, close: Any) -> None:
    sem = asyncio.Semaphore(IN_FLIGHT)
    sockets: list[Any] = []

    async def drain(ws: Any) -> None:
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass

    async def one(url: str) -> None:
        async with sem:
            ws = await websockets.connect(
                url, origin=origin, ping_interval=None, open_timeout=120, compression=None, max_size=None
            )
        sockets.append(ws)
        tasks.append(asyncio.create_task(drain(ws)))

    tasks: list[asyncio.Task] = []
    started = time.time()
    results = await asyncio.gather(*(one(u) for u in urls), return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    report.put(
        {
            "held": len(sockets),
            "failures": len(failures),
            "first_failure": failures[:1],
            "started": started,
            "finished": time.time(),
        }
    )
    await asyncio.to_thread(close.wait)  # a multiprocessing.Event: wait in a thread
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    for task in tasks:
        task.cancel()


class Holders:
    """Client processes holding idle sockets; ``add`` more in stages, ``close`` them all."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.ctx = mp.get_context("fork")
        self.close_event = self.ctx.Event()
        self.procs: list[mp.Process] = []

    def add(self, urls: list[str], processes: int) -> dict[str, Any]:
        """Open ``urls`` from ``processes`` new holders; return held, failures and connects/s."""
        report = self.ctx.Queue()
        chunks = [urls[i::processes] for i in range(processes)]
        for chunk in chunks:
            proc = self.ctx.Process(target=_hold, args=(chunk, self.origin, report, self.close_event), daemon=True)
            proc.start()
            self.procs.append(proc)
        reports = [report.get(timeout=600) for _ in chunks]
        held = sum(r["held"] for r in reports)
        seconds = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
        return {
            "held": held,
            "failures": sum(r["failures"] for r in reports),
            "first_failure": next((r["first_failure"] for r in reports if r["first_failure"]), []),
            "seconds": round(seconds, 2),
            "connects_per_s": round(held / seconds, 1) if seconds > 0 else None,
        }

    def close(self) -> None:
        self.close_event.set()
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.procs = []
