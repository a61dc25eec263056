"""A message's send on the event loop (``Chat.save_message_on_loop``, chatroom/postgresql/loop.py).

On PostgreSQL the common send is stored by one statement on the loop's own connection and
fanned out from the loop; anything else returns None having written nothing, and the socket
then calls ``save_message``, which stores or refuses as always. SQLite has no loop connection:
every send takes the ordinary path. Both are tested through the socket's own sequence
(``_send``): every send is stored exactly once, refusals say why, nothing takes a seq it keeps.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psycopg
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone

from bots.models import BotDelivery
from chatroom.postgresql import loop as on_loop
from conversations import events
from conversations.chat import Chat
from conversations.errors import Banned, ConversationEnded, Muted, NotParticipant, RateLimited
from conversations.models import Conversation, Message, Participant
from tests.test_send_sql import _ban, _leave, _mute

pytestmark = pytest.mark.django_db(transaction=True)

ON_LOOP = connection.vendor == "postgresql"


async def _send(chat: Chat, sender: Participant, frame: dict) -> tuple[Message, bool]:
    """As the socket sends (``ConversationConsumer.on_message_send``): the message and whether
    the loop stored it."""
    message = await chat.save_message_on_loop(sender, frame)
    if message is not None:
        return message, True
    return await database_sync_to_async(chat.save_message)(sender, frame), False


@database_sync_to_async
def _room(bots=()) -> tuple[Chat, Participant]:
    chat, participants = Chat.create("Room", "alice", bots)
    return chat, participants[0]


@database_sync_to_async
def _next_seq(chat: Chat) -> int:
    return Conversation.objects.values_list("next_seq", flat=True).get(pk=chat.conversation.pk)


@database_sync_to_async
def _texts(chat: Chat) -> list[tuple[int | None, str]]:
    rows = Message.objects.filter(conversation_id=chat.conversation.pk).exclude(kind=Message.Kind.SYSTEM)
    return list(rows.order_by("created_at").values_list("seq", "text"))


async def test_a_plain_send_is_stored_and_fanned_out_from_the_loop():
    chat, alice = await _room()
    layer = get_channel_layer()
    inbox = await layer.new_channel()
    await layer.group_add(events.group_name(chat.conversation.pk), inbox)
    seq = await _next_seq(chat)

    message, on_the_loop = await _send(chat, alice, {"client_id": "c1", "text": "hi"})

    assert on_the_loop is ON_LOOP
    assert (message.seq, message.created, message.sender.name) == (seq, True, "alice")
    assert await _texts(chat) == [(seq, "hi")] and await _next_seq(chat) == seq + 1
    frame = await layer.receive(inbox)
    assert (frame["type"], frame["seq"]) == ("chat.frame", seq)
    assert '"text":"hi"' in frame["text"].replace(" ", "")


async def test_the_sender_read_on_the_loop_is_the_sender_the_orm_reads(monkeypatch):
    """The loop connection reads timestamps with psycopg's own loader in UTC, as Django reads
    them, whatever the session's time zone would be: the same instants in the same zone."""
    if ON_LOOP:  # a server whose sessions start in another zone
        options = connection.settings_dict["OPTIONS"]
        monkeypatch.setitem(options, "options", f"{options.get('options', '')} -c TimeZone=Asia/Tokyo")
    chat, alice = await _room()
    muted_until = timezone.now() - timedelta(minutes=1)
    await database_sync_to_async(Participant.objects.filter(pk=alice.pk).update)(muted_until=muted_until)

    message, _ = await _send(chat, alice, {"client_id": "c1", "text": "hi"})

    orm = await database_sync_to_async(Participant.objects.select_related("conversation").get)(pk=alice.pk)
    sender = message.sender
    for name in ("joined_at", "muted_until"):
        assert (getattr(sender, name), getattr(sender, name).utcoffset()) == (getattr(orm, name), timedelta(0))
    assert sender.conversation.created_at == orm.conversation.created_at
    assert sender.conversation.created_at.tzinfo == orm.conversation.created_at.tzinfo


@pytest.mark.parametrize(
    "change, error", [(_mute, Muted), (_ban, Banned), (_leave, NotParticipant)], ids=["muted", "banned", "left"]
)
async def test_a_refused_send_writes_nothing_on_the_loop_and_says_why(change, error):
    """Changed by another process (the admin): the socket's participant object is stale."""
    chat, _alice = await _room()
    bob = await database_sync_to_async(chat.join)("bob")

    @database_sync_to_async
    def change_in_the_database():
        row = Participant.objects.get(pk=bob.pk)
        change(row)
        row.save()

    await change_in_the_database()
    seq = await _next_seq(chat)

    assert await chat.save_message_on_loop(bob, {"client_id": "c1", "text": "hi"}) is None
    assert await _next_seq(chat) == seq and await _texts(chat) == []
    with pytest.raises(error):
        await _send(chat, bob, {"client_id": "c1", "text": "hi"})
    assert await _next_seq(chat) == seq and await _texts(chat) == []


async def test_the_rate_limit_and_an_ended_room_refuse_without_a_seq(settings):
    settings.CHAT_LIMITS = {"RATE_LIMIT_MESSAGES": 1, "RATE_LIMIT_WINDOW": 60}
    chat, alice = await _room()
    await _send(chat, alice, {"client_id": "c1", "text": "one"})
    seq = await _next_seq(chat)
    with pytest.raises(RateLimited):
        await _send(chat, alice, {"client_id": "c2", "text": "two"})
    await database_sync_to_async(chat.end)(by=alice)
    seq = await _next_seq(chat)
    settings.CHAT_LIMITS = {}
    with pytest.raises(ConversationEnded):
        await _send(Chat(chat.conversation), alice, {"client_id": "c3", "text": "three"})
    assert await _next_seq(chat) == seq
    assert [text for _seq, text in await _texts(chat)] == ["one"]


async def test_a_resent_client_id_is_answered_with_the_stored_message():
    chat, alice = await _room()
    first, _ = await _send(chat, alice, {"client_id": "c1", "text": "hi"})
    seq = await _next_seq(chat)

    again, on_the_loop = await _send(chat, alice, {"client_id": "c1", "text": "hi"})

    assert not on_the_loop  # the loop's INSERT failed on the unique client id: the ordinary path answers
    assert (again.pk, again.seq, again.created) == (first.pk, first.seq, False)
    assert await _next_seq(chat) == seq and len(await _texts(chat)) == 1


async def test_premoderated_quoted_and_invalid_sends_take_the_ordinary_path():
    chat, alice = await _room()
    bob = await database_sync_to_async(chat.join)("bob")
    first, _ = await _send(chat, alice, {"client_id": "c1", "text": "hi"})

    quote, on_the_loop = await _send(chat, bob, {"client_id": "c2", "text": "re", "quoted_message_id": str(first.pk)})
    assert not on_the_loop and quote.quoted_message_id == first.pk
    assert await chat.save_message_on_loop(bob, {"client_id": "c3", "text": ""}) is None
    assert await chat.save_message_on_loop(bob, {"client_id": "c4", "attachments": [str(uuid.uuid4())]}) is None

    await database_sync_to_async(Conversation.objects.filter(pk=chat.conversation.pk).update)(
        premoderation=Conversation.Premoderation.ALL
    )
    pending, on_the_loop = await _send(Chat(chat.conversation), bob, {"client_id": "c5", "text": "wait"})
    assert not on_the_loop and (pending.seq, pending.approval) == (None, Message.Approval.PENDING)


async def test_a_send_to_a_room_with_a_bot_records_its_delivery():
    chat, alice = await _room(bots=["echo"])
    message, on_the_loop = await _send(chat, alice, {"client_id": "c1", "text": "hi"})
    assert on_the_loop is ON_LOOP
    deliveries = await database_sync_to_async(list)(
        BotDelivery.objects.filter(message_id=message.pk).values_list("bot_name")
    )
    assert deliveries == [("echo",)]


async def test_a_kept_loop_connection_the_server_ended_loses_no_send(settings):
    """The loop's connection is kept while healthy (as in daphne); the server ends it between
    two sends. The send that finds it ended is stored by the ordinary path, the next one by a
    new loop connection."""
    settings.DATABASES["default"]["CONN_MAX_AGE"] = None
    try:
        chat, alice = await _room()
        _, first_on_loop = await _send(chat, alice, {"client_id": "c1", "text": "one"})
        if ON_LOOP:
            backend = on_loop._held[asyncio.get_running_loop()].conn.info.backend_pid
            await database_sync_to_async(_end_backend)(backend)
        _, second_on_loop = await _send(chat, alice, {"client_id": "c2", "text": "two"})
        _, third_on_loop = await _send(chat, alice, {"client_id": "c3", "text": "three"})
    finally:
        settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
        await on_loop.close()
        await database_sync_to_async(lambda: connection.close())()  # the database thread's, kept meanwhile

    assert (first_on_loop, second_on_loop, third_on_loop) == (ON_LOOP, False, ON_LOOP)
    texts = await _texts(chat)
    assert [text for _seq, text in texts] == ["one", "two", "three"]
    assert [seq for seq, _text in texts] == list(range(texts[0][0], texts[0][0] + 3))


def _end_backend(pid: int) -> None:
    """The server ends this loop's connection (its backend, by pid: other loops' connections,
    such as those of the daphne processes of other tests, stay)."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid = %s AND application_name = %s",
            [pid, on_loop.APPLICATION_NAME],
        ).fetchone()[0]
    assert ended == 1


async def test_the_room_bots_a_state_tells_only_while_no_seq_was_taken_since():
    """A bot that joined between the sender's state and its seq must not be missed: the state's
    bot ids (none) are trusted only if the message's seq is the one the state saw next."""
    chat, alice = await _room()
    state = await database_sync_to_async(chat._refresh_participant)(alice, count_since=chat._rate_since())
    next_seq = state.conversation.next_seq
    assert chat._bots_known(state, next_seq)[0] is True
    assert chat._bots_known(state, next_seq + 1) == (False, None)


EVERYONE_S_BOTS = {
    "echo": {"class": "bots.builtin.echo.EchoBot", "description": "Repeats.", "trigger": "all"},
    "parrot": {"class": "bots.builtin.echo.EchoBot", "description": "Repeats too.", "trigger": "all"},
}


@pytest.fixture
def everyone_s_bots(settings):
    settings.CHAT_INSTALLED_BOTS = EVERYONE_S_BOTS
    settings.CHAT_BOT_MANAGER = None


@database_sync_to_async
def _deliveries(message: Message) -> list[tuple[str, int, dict]]:
    rows = BotDelivery.objects.filter(message_id=message.pk).order_by("bot_name")
    return [(d.bot_name, d.payload["message"]["seq"], d.payload["message"]["sender"]) for d in rows]


def _after_commit_deliveries(monkeypatch, chat: Chat) -> list[int]:
    """The seqs of the messages whose deliveries the fan-out wrote after their commit."""
    seqs: list[int] = []
    to_room_bots = chat._to_room_bots

    def spy(message, bot_ids):
        seqs.append(message.seq)
        to_room_bots(message, bot_ids)

    monkeypatch.setattr(chat, "_to_room_bots", spy)
    return seqs


async def test_a_socket_s_later_sends_write_their_deliveries_in_their_own_statement(everyone_s_bots, monkeypatch):
    """The first send finds the room's bots after its commit; the next ones plan their
    deliveries with them, and the send's statement writes them with the message (PostgreSQL)."""
    chat, alice = await _room(bots=["echo"])
    after_commit = _after_commit_deliveries(monkeypatch, chat)

    first, _ = await _send(chat, alice, {"client_id": "c1", "text": "one"})
    second, _ = await _send(chat, alice, {"client_id": "c2", "text": "two"})
    third, _ = await _send(chat, alice, {"client_id": "c3", "text": "three"})

    sender = {"id": str(alice.pk), "name": "alice", "kind": "human"}
    for message in (first, second, third):
        assert await _deliveries(message) == [("echo", message.seq, sender)]
    assert after_commit == ([first.seq] if ON_LOOP else [first.seq, second.seq, third.seq])


async def test_each_delivery_s_wake_up_carries_its_row_with_the_message_s_seq(everyone_s_bots, monkeypatch):
    """What a worker may run ahead of its claim (bots/ahead.py) is the row as stored: its id
    (returned by the send's statement where it wrote the deliveries) and its payload, seq
    included (set by that statement in the row, and in the wake-up's copy)."""
    from bots import outbox

    woken: list[tuple[str, dict | None]] = []
    monkeypatch.setattr(outbox, "wake", lambda pid, delivery=None: woken.append((str(pid), outbox.ahead_of(delivery))))
    chat, alice = await _room(bots=["echo", "parrot"])
    for n in (1, 2, 3):  # the first finds the room's bots after its commit, the next are planned
        message, _ = await _send(chat, alice, {"client_id": f"c{n}", "text": f"m{n}"})
        rows = await database_sync_to_async(lambda m=message: list(BotDelivery.objects.filter(message_id=m.pk)))()
        assert len(rows) == 2 and len(woken) == 2 * n
        carried = {pid: wake for pid, wake in woken[-2:]}
        for row in rows:
            wake = carried[str(row.participant_id)]
            assert wake == {"id": row.pk, "type": "message", "bot": row.bot_name, "hop": 0, "payload": row.payload}
            assert wake["payload"]["message"]["seq"] == message.seq


async def test_a_bot_that_joined_since_the_plan_still_gets_the_message(everyone_s_bots, monkeypatch):
    chat, alice = await _room(bots=["echo"])
    await _send(chat, alice, {"client_id": "c1", "text": "one"})
    await database_sync_to_async(Chat(chat.conversation).add_bot)("parrot")  # another process
    after_commit = _after_commit_deliveries(monkeypatch, chat)

    message, _ = await _send(chat, alice, {"client_id": "c2", "text": "two"})

    sender = {"id": str(alice.pk), "name": "alice", "kind": "human"}
    assert await _deliveries(message) == [("echo", message.seq, sender), ("parrot", message.seq, sender)]
    assert after_commit == [message.seq]  # the plan had one bot: the statement wrote nothing of it
    again, _ = await _send(chat, alice, {"client_id": "c3", "text": "three"})
    assert [bot for bot, _seq, _sender in await _deliveries(again)] == ["echo", "parrot"]


async def test_a_sender_renamed_since_the_plan_is_delivered_by_their_new_name(everyone_s_bots, monkeypatch):
    chat, alice = await _room(bots=["echo"])
    await _send(chat, alice, {"client_id": "c1", "text": "one"})
    await database_sync_to_async(Participant.objects.filter(pk=alice.pk).update)(name="alicia")
    after_commit = _after_commit_deliveries(monkeypatch, chat)

    message, _ = await _send(chat, alice, {"client_id": "c2", "text": "two"})

    assert message.sender.name == "alicia"
    later, _ = await _send(chat, alice, {"client_id": "c3", "text": "three"})  # planned as "alicia"
    assert after_commit == ([message.seq] if ON_LOOP else [message.seq, later.seq])
    assert [sender["name"] for _bot, _seq, sender in await _deliveries(later)] == ["alicia"]
    assert await _deliveries(message) == [
        ("echo", message.seq, {"id": str(alice.pk), "name": "alicia", "kind": "human"})
    ]


async def test_a_refused_send_writes_no_planned_delivery(everyone_s_bots):
    chat, alice = await _room(bots=["echo"])
    await _send(chat, alice, {"client_id": "c1", "text": "one"})
    await database_sync_to_async(Participant.objects.filter(pk=alice.pk).update)(
        muted_until=timezone.now() + timedelta(minutes=5)
    )
    with pytest.raises(Muted):
        await _send(chat, alice, {"client_id": "c2", "text": "two"})
    assert await database_sync_to_async(BotDelivery.objects.count)() == 1


async def test_deliveries_that_need_the_database_to_decide_are_written_after_the_commit(everyone_s_bots, monkeypatch):
    """A bot installed in the admin (its spec is a row) and a command in a room with a manager
    cannot be planned on the event loop: the fan-out writes their deliveries after the commit."""
    from bots.models import Bot

    await database_sync_to_async(Bot.objects.create)(
        name="keeper", class_path="bots.builtin.echo.EchoBot", trigger=Bot.Trigger.ALL
    )
    chat, alice = await _room(bots=["keeper"])
    await _send(chat, alice, {"client_id": "c1", "text": "one"})
    after_commit = _after_commit_deliveries(monkeypatch, chat)

    message, _ = await _send(chat, alice, {"client_id": "c2", "text": "two"})

    assert [bot for bot, _seq, _sender in await _deliveries(message)] == ["keeper"]
    assert after_commit == [message.seq]
