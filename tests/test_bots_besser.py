"""BESSER bots (bots/transports/besser.py) against a small server that speaks BESSER's WebSocket
protocol exactly, installed through CHAT_INSTALLED_BOTS and run by the in-process worker.

The server's frames are built the way BESSER builds them:
https://github.com/BESSER-PEARL/BESSER-Bot-Framework/blob/main/besser/bot/platforms/websocket/websocket_platform.py
(``reply``, ``reply_markdown``, ``reply_options``, ``reply_file``, ``reply_image``, ``reply_dataframe``,
``reply_plotly``, ``reply_location``; ``Payload``/``PayloadEncoder`` in ``besser/bot/platforms/payload.py``;
``File.to_dict`` in ``besser/bot/core/file.py``) and, for ``agent_reply_*``,
https://github.com/BESSER-PEARL/BESSER-Agentic-Framework/blob/main/besser/agent/platforms/websocket/websocket_platform.py
(whose ``PayloadEncoder`` adds ``user_id`` and ``history``).
"""

from __future__ import annotations

import array
import asyncio
import base64
import io
import json
import wave
from contextlib import asynccontextmanager

import plotly.graph_objects as go
import plotly.io
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from websockets.asyncio.server import serve

from bots.builtin import samples
from bots.models import BotDelivery
from bots.replies import ReplyError
from bots.testing import running_worker
from bots.transports.besser import BesserBot, replies_from_payload
from bots.worker import db
from conversations.chat import Chat
from conversations.models import Message
from conversations.uploads import store_upload

pytestmark = pytest.mark.django_db(transaction=True)

#: The smallest JPEG the sniffer recognises (BESSER's reply_image sends cv2's JPEG, base64).
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
#: What pandas' DataFrame({"city": ["Paris", "Rome"], "pop": [2.1, 2.8]}).to_json() returns.
DATAFRAME_JSON = '{"city":{"0":"Paris","1":"Rome"},"pop":{"0":2.1,"1":2.8}}'
FIGURE = go.Figure(data=[go.Bar(x=["a", "b"], y=[1, 3])], layout={"title": {"text": "Bars"}})


def bbf(action: str, message) -> str:
    """BESSER Bot Framework's PayloadEncoder: {"action", "message"}."""
    return json.dumps({"action": action, "message": message})


def agent(action: str, message) -> str:
    """BESSER Agentic Framework's PayloadEncoder: {"action", "message", "user_id", "history"}."""
    return json.dumps({"action": action, "message": message, "user_id": None, "history": False})


def every_reply(encode, prefix: str) -> list[str]:
    """One frame per reply kind, in the order of the platform's ``reply_*`` methods."""
    return [
        encode(f"{prefix}_str", "Hello from BESSER"),
        encode(f"{prefix}_markdown", "**bold** and _em_"),
        encode(f"{prefix}_options", json.dumps(dict(enumerate(["Yes", "No", "Maybe"])))),  # reply_options
        encode(
            f"{prefix}_file",  # File(file_path=...).to_dict()
            {"name": "report.pdf", "type": "pdf", "base64": base64.b64encode(samples.pdf()).decode()},
        ),
        encode(f"{prefix}_image", base64.b64encode(JPEG).decode()),  # cv2.imencode('.jpg') -> base64
        encode(f"{prefix}_dataframe", DATAFRAME_JSON),  # df.to_json()
        encode(f"{prefix}_plotly", plotly.io.to_json(FIGURE)),  # plotly.io.to_json(plot)
        encode(f"{prefix}_location", {"latitude": 46.2044, "longitude": 6.1432}),  # reply_location
    ]


class FakeBesser:
    """A BESSER WebSocketPlatform stand-in: one session per connection, keyed like the Agentic
    Framework (X-User-ID header), answering commands with exactly BESSER's frames."""

    def __init__(self) -> None:
        self.connections = 0
        self.user_ids: list[str | None] = []
        self.received: list[dict] = []
        self.dropped = asyncio.Event()

    async def handler(self, conn) -> None:
        self.connections += 1
        number = self.connections
        self.user_ids.append(conn.request.headers.get("X-User-ID"))
        async for raw in conn:
            payload = json.loads(raw)
            self.received.append(payload)
            action, message = payload["action"], payload["message"]
            if action == "user_file":
                file = json.loads(message)  # File.decode(payload.message): a JSON string
                size = len(base64.b64decode(file["base64"]))
                await conn.send(bbf("bot_reply_str", f"got {file['name']} ({file['type']}, {size} bytes)"))
            elif message == "all":
                for frame in every_reply(bbf, "bot_reply"):
                    await conn.send(frame)
            elif message == "agent":
                for frame in every_reply(agent, "agent_reply"):
                    await conn.send(frame)
            elif message == "silence":
                pass  # zero replies is a valid answer
            elif message == "drop":
                await conn.send(bbf("bot_reply_str", "dropping"))
                await conn.close()
                await conn.wait_closed()
                self.dropped.set()
                return
            else:
                await conn.send(bbf("bot_reply_str", f"{message} (session {number})"))


@asynccontextmanager
async def besser_server():
    fake = FakeBesser()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}"
        yield fake


@pytest.fixture
def install(settings):
    def install(url: str, **spec):
        settings.CHAT_INSTALLED_BOTS = {"besser": {"kind": "besser", "url": url, "trigger": "all", **spec}}

    return install


async def room():
    chat, people = await db(Chat.create, "Room", "alice", ["besser"])
    return chat, people[0], people[1]


async def send(worker, chat, human, me, data: dict, n=[0]) -> BotDelivery:  # noqa: B006 - a counter
    n[0] += 1
    sent = await db(chat.save_message, human, {"client_id": f"h{n[0]}", **data})

    def finished() -> bool:
        return BotDelivery.objects.filter(participant=me, message_id=sent.pk, status__in=["done", "failed"]).exists()

    await worker.wait_until(finished)
    return await db(BotDelivery.objects.get, participant=me, message_id=sent.pk)


def bot_messages(me) -> list[Message]:
    return list(Message.objects.filter(sender=me).prefetch_related("attachments").order_by("seq"))


def check_every_kind(got: list[Message]) -> None:
    assert [m.kind for m in got] == ["text", "markdown", "options", "file", "image", "table", "chart", "location"]
    text, markdown, options, file, image, table, chart, location = got
    assert text.text == "Hello from BESSER" and markdown.text == "**bold** and _em_"
    assert options.data["options"] == [{"label": v, "value": v} for v in ("Yes", "No", "Maybe")]
    pdf = file.attachments.all()[0]
    assert (pdf.name, pdf.mime, pdf.size) == ("report.pdf", "application/pdf", len(samples.pdf()))
    jpeg = image.attachments.all()[0]
    assert (jpeg.kind, jpeg.mime, jpeg.size) == ("image", "image/jpeg", len(JPEG))
    assert table.data == {"columns": ["city", "pop"], "rows": [["Paris", 2.1], ["Rome", 2.8]]}
    assert chart.data["figure"]["data"][0]["type"] == "bar"
    assert chart.data["figure"]["layout"]["title"]["text"] == "Bars"
    assert location.data == {"latitude": 46.2044, "longitude": 6.1432}


async def test_every_bot_reply_kind_is_stored_as_it_arrives(install):
    async with besser_server() as server:
        install(server.url)
        chat, human, me = await room()
        async with running_worker() as worker:
            item = await send(worker, chat, human, me, {"text": "all"})
            assert item.status == "done", item.last_error
            bot = worker.instance_for(str(me.pk))
            assert isinstance(bot, BesserBot)
            await bot.wait_received(8)
            got = await db(bot_messages, me)
            check_every_kind(got)
            assert [m.client_id for m in got] == [f"besser-{item.id}-{n}-0" for n in range(8)]
            assert server.received == [{"action": "user_message", "message": "all", "user_id": f"chatroom-{me.pk}"}]
            assert server.user_ids == [f"chatroom-{me.pk}"]


async def test_every_agent_reply_kind_and_one_connection_across_deliveries(install):
    async with besser_server() as server:
        install(server.url)
        chat, human, me = await room()
        async with running_worker() as worker:
            await send(worker, chat, human, me, {"text": "silence"})  # no reply at all
            await send(worker, chat, human, me, {"text": "agent"})
            bot = worker.instance_for(str(me.pk))
            await bot.wait_received(8)
            check_every_kind(await db(bot_messages, me))
            assert server.connections == 1 and bot.connections == 1


async def test_options_choice_and_files_reach_the_bot(install):
    async with besser_server() as server:
        install(server.url)
        chat, human, me = await room()
        async with running_worker() as worker:
            await send(worker, chat, human, me, {"text": "all"})
            bot = worker.instance_for(str(me.pk))
            await bot.wait_received(8)
            offer = await db(Message.objects.get, sender=me, kind="options")
            chosen = await db(chat.choose_option, human, str(offer.pk), "Maybe", "pick")
            await worker.wait_until(lambda: BotDelivery.objects.filter(message_id=chosen.pk, status="done").exists())
            await bot.wait_received(9)
            upload = await db(store_upload, chat, human, SimpleUploadedFile("dot.png", samples.png()))
            await send(worker, chat, human, me, {"text": "", "attachments": [str(upload.pk)]})
            await bot.wait_received(10)
        texts = [m.text for m in await db(bot_messages, me)][-2:]
        assert texts == ["Maybe (session 1)", f"got dot.png (image/png, {len(samples.png())} bytes)"]
        assert server.received[1]["message"] == "Maybe"
        assert server.received[2]["action"] == "user_file"


async def test_a_dropped_connection_is_opened_again(install):
    async with besser_server() as server:
        install(server.url)
        chat, human, me = await room()
        async with running_worker() as worker:
            await send(worker, chat, human, me, {"text": "drop"})
            bot = worker.instance_for(str(me.pk))
            await bot.wait_received(1)
            await server.dropped.wait()  # closed on both ends: the bot's next send finds it closed
            item = await send(worker, chat, human, me, {"text": "hello"})
            assert item.status == "done", item.last_error
            await bot.wait_received(2)
        assert [m.text for m in await db(bot_messages, me)] == ["dropping", "hello (session 2)"]
        assert server.connections == 2 and bot.connections == 2
        assert server.user_ids == [f"chatroom-{me.pk}"] * 2  # the same BESSER session key again


async def test_an_unreachable_bot_fails_the_delivery_with_the_reason(install):
    async with besser_server() as server:
        url = server.url
    install(url, max_attempts=1)  # the server is gone: nothing listens on that port
    chat, human, me = await room()
    async with running_worker() as worker:
        item = await send(worker, chat, human, me, {"text": "anyone?"})
    assert item.status == "failed"
    assert f"could not connect to {url}" in item.last_error and "gave up after 1 attempts" in item.last_error


async def test_an_unreachable_bot_is_retried_later(install):
    async with besser_server() as server:
        url = server.url
    install(url, max_attempts=3)
    chat, human, _ = await room()
    async with running_worker() as worker:
        sent = await db(chat.save_message, human, {"client_id": "r1", "text": "anyone?"})
        await worker.wait_until(
            lambda: BotDelivery.objects.filter(message_id=sent.pk, last_error__contains=url).exists()
        )
    item = await db(BotDelivery.objects.get, message_id=sent.pk)
    assert item.status == "pending" and item.attempts == 1


# ---- the mapping alone ------------------------------------------------------------------------------


def speech(samples_list: list[float], shape: list[int]) -> dict:
    """reply_speech's message: raw float32 samples, base64, with their metadata."""
    raw = array.array("f", samples_list).tobytes()
    metadata = {"sample_rate": 16000, "dtype": "float32", "shape": shape}
    return {"audio_data_base64": base64.b64encode(raw).decode(), "metadata": metadata}


def test_html_rag_and_speech_replies():
    (html,) = replies_from_payload({"action": "agent_reply_html", "message": "<p>Hi <b>there</b></p>"})
    assert (html.kind, html.text) == ("text", "Hi there")
    (rag,) = replies_from_payload({"action": "bot_reply_rag", "message": {"answer": "42", "docs": []}})
    assert (rag.kind, rag.text) == ("markdown", "42")
    (audio,) = replies_from_payload({"action": "agent_reply_audio", "message": speech([0.0, 0.5, -0.5, 1.0], [2, 2])})
    with wave.open(io.BytesIO(audio.files[0].read())) as played:
        assert (played.getnchannels(), played.getframerate(), played.getnframes()) == (2, 16000, 2)
    assert audio.kind == "audio"


def test_frames_without_counterpart_and_malformed_frames():
    assert replies_from_payload({"action": "user_message", "message": "echo", "history": True}) == []
    assert replies_from_payload({"action": "agent_reply_str", "message": "old", "history": True}) == []
    assert replies_from_payload({"action": "bot_reply_str", "message": "  "}) == []
    assert replies_from_payload({"action": "bot_reply_something_new", "message": 1}) == []
    for bad in (
        {"action": "bot_reply_location", "message": {"latitude": "north"}},
        {"action": "bot_reply_file", "message": {"name": "x", "type": "pdf", "base64": "%%%"}},
        {"action": "bot_reply_dataframe", "message": "[1, 2]"},
        {"action": "bot_reply_options", "message": "7"},
    ):
        with pytest.raises(ReplyError):
            replies_from_payload(bad)
