"""End to end on a real daphne: a person writes over the WebSocket, the echo bot answers as
``message.new``. Embedded default: the worker runs inside daphne. With REDIS_URL: daphne runs
without it and two ``manage.py botworker`` processes share the work."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from bots.models import BotDelivery
from tests.live import ROOT
from tests.wsclient import Room

pytestmark = pytest.mark.django_db(transaction=True)


class WorkerProcess:
    """``manage.py botworker`` with a daphne's environment; ``start`` returns once it is ready."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 30) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "botworker"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line)
                if "ready" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("the bot worker did not start:\n" + "".join(self.log[-40:]))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def bot_server(start_daphne):
    """A daphne with working bots, whichever layer this run uses."""
    redis = bool(os.environ.get("REDIS_URL"))
    server = start_daphne({"CHAT_EMBEDDED_BOT_WORKER": "0" if redis else "1"})
    workers = [WorkerProcess(server.environment()).start() for _ in range(2 if redis else 0)]
    yield server
    for worker in workers:
        worker.stop()
        print("".join(worker.log))  # shown by pytest when the test fails
    print("".join(server.log))
    print(list(BotDelivery.objects.values("id", "status", "attempts", "worker", "last_error", "created_at")))
    for worker in workers:
        assert not [line for line in worker.log if "Traceback" in line], "".join(worker.log)
    assert not server.tracebacks(), "".join(server.log)


def from_bot(frame: dict) -> bool:
    sender = frame["message"]["sender"]
    return sender is not None and sender["kind"] == "bot"


async def test_the_echo_bot_answers_over_the_websocket_in_order(bot_server):
    room = await Room.create(bot_server, bots=["echo"])
    socket = await room.connect("alice")
    try:
        texts = [f"hello {i}" for i in range(5)]
        for i, text in enumerate(texts):
            await socket.send_text(text, f"c{i}")
        answers = [await socket.expect("message.new", from_bot) for _ in texts]
    finally:
        await socket.close()
    assert [a["message"]["text"] for a in answers] == texts
    assert [a["message"]["sender"]["name"] for a in answers] == ["echo"] * 5
    seqs = [a["message"]["seq"] for a in answers]
    assert seqs == sorted(seqs)
    history = await room.history("alice")
    assert [m["text"] for m in history["messages"] if m["sender"] and m["sender"]["kind"] == "bot"] == texts
