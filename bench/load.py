"""The load generator: WebSocket clients that send timestamped messages and time every delivery.

One asyncio process drives every client of a phase. A message's text is ``BENCH <t> <sender>``
(``t`` from ``time.perf_counter``, one clock for every process on Linux); each socket that is not
the sender notes ``now - t`` when the ``message.new`` arrives, so latency is send -> each other
participant. Frames that are not ``message.new`` are counted by a prefix test, never parsed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import websockets

CONNECT_CONCURRENCY = 32  # daphne's listen backlog is 50: more in flight means SYN retries


@dataclass
class Target:
    """How to reach one server flavour: ``ours`` (chatroom) or ``baseline`` (stock Channels)."""

    kind: str
    ports: list[int]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def url(self, room: dict, member: int, n: int) -> str:
        port = self.ports[n % len(self.ports)]
        if self.kind == "ours":
            return f"ws://127.0.0.1:{port}/ws/conversations/{room['id']}/?token={room['tokens'][member]}"
        return f"ws://127.0.0.1:{port}/ws/rooms/{room['id']}/"

    def frame(self, client_id: str, text: str) -> str:
        if self.kind == "ours":
            return json.dumps({"type": "message.send", "client_id": client_id, "text": text})
        return json.dumps({"client_id": client_id, "text": text})


@dataclass
class Stats:
    """What the clients saw during one step."""

    sent: int = 0
    acks: int = 0
    delivered: int = 0
    echoes: int = 0
    latencies: list[float] = field(default_factory=list)
    echo_latencies: list[float] = field(default_factory=list)
    warm_latencies: list[float] = field(default_factory=list)  # ``Clients.warm``'s echoes
    errors: list[str] = field(default_factory=list)


@dataclass
class Conn:
    ws: Any
    key: str
    room: int
    task: asyncio.Task | None = None


class Clients:
    """The sockets of one phase; their reader tasks feed ``self.stats``."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.conns: list[Conn] = []
        self.stats = Stats()
        self.retries = 0  # connects tried again (the server dropped the handshake)
        self._ids = count()

    async def connect(self, rooms: list[dict], members: int) -> float:
        """Open ``members`` sockets per room (interleaved by room); return the seconds taken."""
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
        start = time.perf_counter()
        plan = [(r, m) for m in range(members) for r in range(len(rooms))]

        async def one(r: int, m: int, n: int) -> Conn:
            async with sem:
                for attempt in range(5):  # daphne drops a handshake its app did not accept in 5 s
                    try:
                        ws = await websockets.connect(
                            self.target.url(rooms[r], m, n),
                            origin=self.target.origin,
                            ping_interval=None,
                            max_queue=None,
                            max_size=None,
                            open_timeout=60,
                            compression=None,
                        )
                        break
                    except (OSError, websockets.InvalidHandshake):
                        if attempt == 4:
                            raise
                        self.retries += 1
                        await asyncio.sleep(0.5 * (attempt + 1))
            conn = Conn(ws, f"{r}.{m}", r)
            conn.task = asyncio.create_task(self._read(conn))
            return conn

        self.conns = list(await asyncio.gather(*(one(r, m, n) for n, (r, m) in enumerate(plan))))
        return time.perf_counter() - start

    async def _read(self, conn: Conn) -> None:
        try:
            async for raw in conn.ws:
                head = raw[:40]
                if "message.new" not in head:
                    if "message.ack" in head:
                        self.stats.acks += 1
                    elif '"error"' in head:
                        self.stats.errors.append(raw[:300])
                    continue
                now = time.perf_counter()
                message = json.loads(raw)["message"]
                text = message.get("text") or ""
                if not text.startswith("BENCH "):
                    if text.startswith("WARM ") and (message.get("sender") or {}).get("kind") == "bot":
                        self.stats.warm_latencies.append(now - float(text.split(" ", 2)[1]))
                    continue
                _, sent_at, sender = text.split(" ", 2)
                if (message.get("sender") or {}).get("kind") == "bot":
                    self.stats.echoes += 1
                    self.stats.echo_latencies.append(now - float(sent_at))
                elif sender != conn.key:
                    self.stats.delivered += 1
                    self.stats.latencies.append(now - float(sent_at))
        except websockets.ConnectionClosed:
            pass

    async def drive(self, rate: float, seconds: float, senders: list[Conn] | None = None) -> float:
        """Send ``rate`` messages/s for ``seconds`` (open loop, round robin over ``senders``);
        return the seconds the sending took (longer than asked when the server pushes back)."""
        senders = senders or self.conns
        start = time.perf_counter()
        sent = 0
        total = int(rate * seconds)
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                conn = senders[sent % len(senders)]
                cid = f"b{next(self._ids)}"
                text = f"BENCH {time.perf_counter():.6f} {conn.key}"
                await conn.ws.send(self.target.frame(cid, text))
                sent += 1
                self.stats.sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        return time.perf_counter() - start

    async def warm(self, expected_echoes: int, limit: float = 60) -> list[float]:
        """One message per room from its first socket, not counted as ``BENCH``, and wait for
        ``expected_echoes`` bot replies to them; their latencies (s). A room's first message
        to a bot finds it cold (its object built, its Context and lane created), where in
        use a bot has met its room before anyone writes: its ``joined`` status. The bench's
        rooms are seeded without one."""
        self.stats = Stats()
        firsts = {conn.room: conn for conn in reversed(self.conns)}
        for conn in firsts.values():
            text = f"WARM {time.perf_counter():.6f} {conn.key}"
            await conn.ws.send(self.target.frame(f"w{next(self._ids)}", text))
        await _until(lambda: len(self.stats.warm_latencies) >= expected_echoes, limit)
        return self.stats.warm_latencies

    async def drain(self, expected: int, expected_echoes: int = 0, acks: bool = False, limit: float = 20) -> bool:
        """Wait until every expected delivery (and ack, echo) has arrived, or ``limit`` s."""

        def done() -> bool:
            s = self.stats
            return s.delivered >= expected and s.echoes >= expected_echoes and (not acks or s.acks >= s.sent)

        return await _until(done, limit)

    async def close(self) -> None:
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY * 4)

        async def one(conn: Conn) -> None:
            async with sem:
                try:
                    await asyncio.wait_for(conn.ws.close(), 10)
                except Exception:  # a socket the server already dropped
                    pass
            if conn.task is not None:
                conn.task.cancel()

        await asyncio.gather(*(one(c) for c in self.conns))
        self.conns = []


async def _until(done: Callable[[], bool], limit: float) -> bool:
    """Whether ``done()`` came true within ``limit`` s (the readers' counters, looked at every
    20 ms: the load generator's, not the server's time)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if done():
            return True
        await asyncio.sleep(0.02)
    return False


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max in milliseconds (None when nothing was measured)."""
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }
