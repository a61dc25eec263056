"""The manager bot: redirects, approvals in pre-moderated rooms, routes, and refusals that are
answered and logged, never crashes."""

from __future__ import annotations

import pytest

from bots import registry
from bots.base import Bot
from bots.models import BotDelivery
from bots.testing import running_worker
from bots.worker import db
from conversations.chat import Chat
from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)


class Parrot(Bot):
    def on_message(self, message, context):
        return f"{self.name}: {message.text}" + (" (redirected)" if message.redirected else "")


@pytest.fixture
def manager(settings):
    """Install the manager (with ``kwargs``) and two local bots: parrot (@mention) and chatter (all)."""

    def install(**kwargs):
        settings.CHAT_INSTALLED_BOTS = {
            **settings.CHAT_INSTALLED_BOTS,
            "manager": {"class": "bots.builtin.manager.ManagerBot", "kwargs": kwargs, "trigger": "all"},
        }
        settings.CHAT_BOT_MANAGER = "manager"

    registry.register_local("parrot", Parrot, trigger="mention")
    registry.register_local("chatter", Parrot, trigger="all")
    yield install
    registry.unregister_local("parrot")
    registry.unregister_local("chatter")


def settled() -> bool:
    return not BotDelivery.objects.filter(status__in=["pending", "running"]).exists()


def texts(conversation_id, bot: str) -> list[str]:
    return list(
        Message.objects.filter(conversation_id=conversation_id, sender__bot_name=bot)
        .order_by("created_at")
        .values_list("text", flat=True)
    )


class Room:
    def __init__(self, *bots: str) -> None:
        self.chat, people = Chat.create("Managed", "alice", list(bots))
        self.owner = people[0]
        self.id = self.chat.conversation.pk
        self.count = 0

    def say(self, text: str, who=None, **extra) -> Message:
        self.count += 1
        data = {"text": text, "client_id": f"m{self.count}", **extra}
        return self.chat.save_message(who or self.owner, data)


async def run(worker, room: Room, text: str, **extra) -> Message:
    message = await db(room.say, text, **extra)
    await worker.wait_until(settled)
    return message


async def test_redirect_hands_a_quoted_message_to_chosen_bots_only(manager):
    manager()
    room = await db(Room, "parrot", "chatter")
    async with running_worker() as worker:
        hello = await run(worker, room, "hello there")
        assert await db(texts, room.id, "parrot") == []  # not mentioned: parrot heard nothing
        await run(worker, room, "/redirect parrot", quoted_message_id=str(hello.pk))
        await run(worker, room, f"/redirect {hello.pk} parrot -- bonjour")
    assert await db(texts, room.id, "parrot") == ["parrot: hello there (redirected)", "parrot: bonjour (redirected)"]
    assert await db(texts, room.id, "manager") == ["Redirected to parrot.", "Redirected to parrot."]
    # chatter heard the humans (trigger all) but neither the commands nor the redirects.
    assert await db(texts, room.id, "chatter") == ["chatter: hello there"]


async def test_bad_commands_are_refused_answered_and_logged(manager, caplog):
    manager()
    room = await db(Room, "parrot")
    elsewhere = await db(Room)
    bob = await db(room.chat.join, "bob")
    async with running_worker() as worker:
        hello = await run(worker, room, "hello")
        foreign = await db(elsewhere.say, "not here")
        quote = {"quoted_message_id": str(hello.pk)}
        await run(worker, room, "/redirect", **quote)
        await run(worker, room, "/redirect ghost", **quote)
        await run(worker, room, "/redirect parrot")
        await run(worker, room, f"/redirect {foreign.pk} parrot")
        await run(worker, room, "/redirect not-a-uuid-at-all-but-long-enough parrot")
        await run(worker, room, "/approve")
        await run(worker, room, "/frobnicate")
        await run(worker, room, "/pending", who=bob)
    assert await db(texts, room.id, "manager") == [
        "Refused: /redirect needs at least one bot name",
        "Refused: no bot named 'ghost' in this conversation",
        "Refused: /redirect needs a message id, or quote the message",
        "Refused: no such message in this conversation",
        "Refused: /redirect needs a message id, or quote the message",
        "Refused: /approve needs a message id, or quote the message",
        "Refused: unknown command /frobnicate; /help lists them",
        "Refused: only the owner and moderators can give me commands",
    ]
    assert await db(texts, room.id, "parrot") == []
    statuses = await db(lambda: set(BotDelivery.objects.filter(bot_name="manager").values_list("status", flat=True)))
    assert statuses == {"done"}  # refused, never crashed
    assert caplog.text.count("manager refused") == 8


async def test_the_manager_approves_pending_bot_messages_on_command(manager):
    manager()
    room = await db(Room, "chatter")
    await db(Conversation.objects.filter(pk=room.id).update, premoderation="bots")
    async with running_worker() as worker:
        await run(worker, room, "hi")
        pending = await db(Message.objects.get, conversation_id=room.id, sender__bot_name="chatter")
        assert (pending.approval, pending.seq) == ("pending", None)
        await run(worker, room, "/pending")
        await run(worker, room, "/approve all")
    approved = await db(Message.objects.get, pk=pending.pk)
    assert approved.approval == "approved" and approved.seq is not None
    assert await db(texts, room.id, "manager") == [
        f"chatter wants to say: 'chatter: hi'. /approve {pending.pk} or /reject.",
        f"{pending.pk} chatter: chatter: hi",
        "Approved 1 message(s).",
    ]


async def test_trusted_bots_are_approved_and_routes_redirect(manager):
    manager(approve_bots=["chatter", "parrot"], routes={r"\bweather\b": ["parrot"]})
    room = await db(Room, "chatter", "parrot")
    await db(Conversation.objects.filter(pk=room.id).update, premoderation="bots")
    async with running_worker() as worker:
        await run(worker, room, "how is the weather?")
    assert await db(
        lambda: list(
            Message.objects.filter(conversation_id=room.id, sender__kind="bot").values_list("approval", flat=True)
        )
    ) == ["approved", "approved"]
    assert await db(texts, room.id, "parrot") == ["parrot: how is the weather? (redirected)"]
    assert await db(texts, room.id, "manager") == []
