"""Webhook bots against a real local HTTP server: signed POSTs, replies from the response body,
retries with back-off on 5xx, time-outs, no retry on 4xx, malformed answers, order."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bots.models import BotContext, BotDelivery
from bots.testing import running_worker
from bots.worker import db
from conversations.chat import Chat
from conversations.models import Message

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "s3cret"


class HookServer:
    """A bot's web server: checks the signature like a receiver should, then answers per path."""

    def __init__(self) -> None:
        self.received: list[dict] = []  # every verified request body, in arrival order
        self.bad_signatures = 0
        self.release = threading.Event()  # frees requests held by /hang
        self.failed_once: set[str] = set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers.get("X-Chatroom-Timestamp", "")
                signed = f"{timestamp}.".encode() + body
                expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
                fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
                if not (fresh and hmac.compare_digest(expected, self.headers.get("X-Chatroom-Signature", ""))):
                    hook.bad_signatures += 1
                    return self.answer(401, {"error": "bad signature"})
                event = json.loads(body)
                assert self.headers["X-Chatroom-Delivery"] == str(event["delivery_id"])
                hook.received.append({**event, "path": self.path})
                if event["type"] == "status":
                    return self.answer(204, None)
                text = event["message"]["text"]
                if self.path == "/flaky" and text not in hook.failed_once:
                    hook.failed_once.add(text)
                    return self.answer(503, {"error": "try later"})
                if self.path == "/hang":
                    hook.release.wait(30)
                if self.path == "/gone":
                    return self.answer(404, {"error": "no such bot"})
                if self.path == "/garbage":
                    return self.answer(200, {"replies": [{"kind": "hologram", "text": "?"}]})
                turn = event["context"]["current_turn_id"]
                seen = event["context"]["misc"].get("seen", 0) + 1
                return self.answer(
                    200,
                    {"replies": [{"kind": "text", "text": f"got {text} (turn {turn})"}], "misc": {"seen": seen}},
                )

            def answer(self, status: int, payload) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def messages(self) -> list[tuple[str, int]]:
        return [(e["message"]["text"], e["attempt"]) for e in self.received if e["type"] == "message"]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hook():
    server = HookServer()
    yield server
    server.close()


@pytest.fixture
def install(settings):
    def install(path: str, **spec) -> None:
        settings.CHAT_INSTALLED_BOTS = {
            "hook": {"kind": "webhook", "url": hook_url[0] + path, "secret": SECRET, "trigger": "all", **spec}
        }

    hook_url: list[str] = []
    install.base = hook_url
    return install


async def room_with_hook():
    chat, people = await db(Chat.create, "Room", "alice", ["hook"])
    return chat, people[0], people[1]


async def say(chat, who, text):
    return await db(chat.save_message, who, {"text": text, "client_id": text})


def replies_of(bot) -> list[str]:
    return list(Message.objects.filter(sender=bot).order_by("seq").values_list("text", flat=True))


def settled() -> bool:
    return not BotDelivery.objects.filter(status__in=["pending", "running"]).exists()


async def test_signed_post_and_the_reply_in_the_response_body(hook, install):
    install.base.append(hook.url)
    install("/ok")
    chat, alice, bot = await room_with_hook()
    async with running_worker() as worker:
        await say(chat, alice, "one")
        await say(chat, alice, "two")
        await worker.wait_until(lambda: len(replies_of(bot)) == 2 and settled())
    assert await db(replies_of, bot) == ["got one (turn 1)", "got two (turn 2)"]
    assert hook.bad_signatures == 0
    status, first, _ = hook.received
    assert status["type"] == "status" and status["status"]["event"] == "joined"
    assert first["bot"] == "hook" and first["conversation"]["id"] == str(chat.conversation.pk)
    assert first["participant_id"] == str(bot.pk) and first["message"]["sender"]["name"] == "alice"
    assert first["context"]["requests"]["1"]["text"] == "one"
    rows = await db(lambda: list(BotDelivery.objects.order_by("id").values("status", "attempts", "last_status")))
    assert rows == [{"status": "done", "attempts": 1, "last_status": s} for s in (204, 200, 200)]
    context = await db(BotContext.objects.get, participant=bot)
    assert context.misc == {"seen": 2} and context.responses["2"][0]["text"] == "got two (turn 2)"


async def test_a_5xx_is_tried_again_with_back_off_and_order_holds(hook, install):
    install.base.append(hook.url)
    install("/flaky", retry_backoff=0.05)
    chat, alice, bot = await room_with_hook()
    async with running_worker() as worker:
        await say(chat, alice, "first")
        await say(chat, alice, "second")
        await worker.wait_until(lambda: len(replies_of(bot)) == 2 and settled())
    # "second" waited for "first": a failing delivery blocks the ones after it (order before speed).
    assert hook.messages() == [("first", 1), ("first", 2), ("second", 1), ("second", 2)]
    assert await db(replies_of, bot) == ["got first (turn 1)", "got second (turn 2)"]
    first = await db(lambda: BotDelivery.objects.filter(type="message").order_by("id").first())
    assert (first.status, first.attempts, first.last_status) == ("done", 2, 200)


async def test_a_bot_that_does_not_answer_in_time_is_retried_then_given_up(hook, install):
    install.base.append(hook.url)
    install("/hang", timeout=0.5, max_attempts=2, retry_backoff=0.05)
    chat, alice, bot = await room_with_hook()
    async with running_worker() as worker:
        await say(chat, alice, "hello?")
        await worker.wait_until(lambda: BotDelivery.objects.filter(type="message", status="failed").exists())
    item = await db(BotDelivery.objects.get, type="message")
    assert item.attempts == 2 and "no answer within 0.5 s; gave up after 2 attempts" in item.last_error
    assert hook.messages() == [("hello?", 1), ("hello?", 2)]
    assert await db(replies_of, bot) == []


async def test_a_4xx_fails_at_once_and_a_malformed_answer_stores_nothing(hook, install):
    install.base.append(hook.url)
    install("/gone")
    chat, alice, bot = await room_with_hook()
    async with running_worker() as worker:
        await say(chat, alice, "anyone?")
        await worker.wait_until(settled)
        gone = await db(BotDelivery.objects.get, type="message")
        assert (gone.status, gone.attempts, gone.last_status) == ("failed", 1, 404)
        assert "HTTP 404 (not retried)" in gone.last_error
        install("/garbage")
        await say(chat, alice, "and now?")
        await worker.wait_until(lambda: BotDelivery.objects.filter(type="message", status="failed").count() == 2)
    garbage = await db(lambda: BotDelivery.objects.filter(type="message").order_by("id").last())
    assert "malformed reply refused" in garbage.last_error and "hologram" in garbage.last_error
    assert await db(replies_of, bot) == []
    assert hook.messages() == [("anyone?", 1), ("and now?", 1)]


async def test_a_wrong_secret_is_refused_by_the_receiver(hook, install):
    install.base.append(hook.url)
    install("/ok", secret="not-the-secret")
    chat, alice, bot = await room_with_hook()
    async with running_worker() as worker:
        await say(chat, alice, "hi")
        await worker.wait_until(lambda: BotDelivery.objects.filter(type="message", status="failed").exists())
    assert hook.bad_signatures == 2 and hook.received == []  # the joined status and the message
    assert await db(replies_of, bot) == []
