"""End to end on a real daphne: a person writes over the WebSocket, the echo bot answers as
``message.new``. Embedded default: the worker runs inside daphne. With REDIS_URL: daphne runs
without it and two ``manage.py botworker`` processes share the work."""

from __future__ import annotations

import os

import pytest

from bots.models import BotDelivery
from tests.live import WorkerProcess
from tests.wsclient import Room

pytestmark = pytest.mark.django_db(transaction=True)


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
        assert not worker.tracebacks(), "".join(worker.log)
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
