"""Moderation from inside the room (the socket's ``moderate`` frame), reports from participants
(``report`` frame and HTTP), and the manager bot's approvals: same Chat methods, same audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from conversations.chat import Chat
from conversations.errors import Forbidden
from conversations.models import Conversation, Message, ModerationAction, Participant, Report
from tests import moderation_support as support
from tests.moderation_support import Room, Ws, connect_expecting_close

room = support.room

live = pytest.mark.django_db(transaction=True)


def make_moderator(participant: Participant) -> None:
    Participant.objects.filter(pk=participant.pk).update(role=Participant.Role.MODERATOR)


def actions() -> list[tuple[str, str]]:
    return list(ModerationAction.objects.order_by("id").values_list("action", "actor_name"))


@live
async def test_a_member_cannot_moderate_through_the_socket(room: Room):
    message = await sync_to_async(room.say)(room.alice, "owner's words")
    bob = await Ws.connect(room.id, room.bob.token)
    for frame in (
        {"action": "hide", "target": str(message.pk)},
        {"action": "kick", "target": str(room.carol.pk), "reason": "because"},
        {"action": "end"},
    ):
        await bob.send({"type": "moderate", **frame})
        assert (await bob.expect("error"))["code"] == "forbidden"
    assert not await sync_to_async(Message.objects.filter(hidden=True).exists)()
    assert await sync_to_async(actions)() == []
    await bob.close()


@live
async def test_a_moderator_hides_mutes_and_kicks_from_the_room(room: Room):
    await sync_to_async(make_moderator)(room.bob)
    message = await sync_to_async(room.say)(room.carol, "spam spam")
    bob = await Ws.connect(room.id, room.bob.token)
    carol = await Ws.connect(room.id, room.carol.token)

    await bob.send({"type": "moderate", "action": "hide", "target": str(message.pk), "reason": "spam"})
    ack = await bob.expect("moderate.ack")
    assert (ack["action"], ack["target"], ack["changed"]) == ("hide", str(message.pk), True)
    assert (await carol.expect("message.deleted"))["id"] == str(message.pk)
    # Hiding it again changes nothing and writes nothing.
    await bob.send({"type": "moderate", "action": "hide", "target": str(message.pk)})
    assert (await bob.expect("moderate.ack"))["changed"] is False

    until = timezone.now() + timedelta(minutes=10)
    await bob.send({"type": "moderate", "action": "mute", "target": str(room.carol.pk), "until": until.isoformat()})
    assert (await bob.expect("moderate.ack"))["changed"] is True
    await carol.send({"type": "message.send", "client_id": "c1", "text": "let me speak"})
    error = await carol.expect("error")
    assert (error["code"], error["until"]) == ("muted", until.isoformat())

    # A moderator cannot act on the owner (nor on another moderator).
    await bob.send({"type": "moderate", "action": "kick", "target": str(room.alice.pk)})
    assert (await bob.expect("error"))["code"] == "forbidden"

    await bob.send({"type": "moderate", "action": "kick", "target": str(room.carol.pk), "reason": "enough"})
    assert (await bob.expect("moderate.ack"))["changed"] is True
    assert await carol.closed_with() == 4403
    kicked = await bob.next_message(lambda m: m["kind"] == "system" and m["data"]["event"] == "kicked")
    assert kicked["data"]["reason"] == "enough"

    assert await sync_to_async(actions)() == [("hide", "bob"), ("mute", "bob"), ("kick", "bob")]
    row = await sync_to_async(ModerationAction.objects.select_related("actor_participant").get)(action="hide")
    assert (row.actor_participant.pk, row.actor_user_id, row.reason) == (room.bob.pk, None, "spam")
    await bob.close()


@live
async def test_the_owner_bans_over_the_socket_and_the_token_stops_working(room: Room):
    alice = await Ws.connect(room.id, room.alice.token)
    carol = await Ws.connect(room.id, room.carol.token)
    await alice.send({"type": "moderate", "action": "ban", "target": str(room.carol.pk)})
    assert (await alice.expect("moderate.ack"))["changed"] is True
    assert await carol.closed_with() == 4403
    error, code = await connect_expecting_close(room.id, room.carol.token)
    assert (error["code"], code) == ("banned", 4403)
    await alice.close()


@live
async def test_settings_and_approve_over_the_socket(room: Room):
    alice = await Ws.connect(room.id, room.alice.token)
    await alice.send({"type": "moderate", "action": "settings", "premoderation": "all"})
    updated = await alice.expect("conversation.updated")
    assert updated["conversation"]["premoderation"] == "all"
    assert (await alice.expect("moderate.ack"))["changed"] is True

    bob = await Ws.connect(room.id, room.bob.token)
    await bob.send({"type": "message.send", "client_id": "b1", "text": "may I?"})
    ack = await bob.expect("message.ack")
    assert (ack["seq"], ack["approval"]) == (None, "pending")
    await alice.send({"type": "moderate", "action": "approve", "target": ack["id"]})
    shown = await bob.next_message(lambda m: m["id"] == ack["id"])
    assert shown["approval"] == "approved" and shown["seq"] is not None
    assert [a for a, _ in await sync_to_async(actions)()] == ["settings", "approve"]
    await alice.close()
    await bob.close()


@live
async def test_bad_moderate_frames_get_clear_errors(room: Room):
    alice = await Ws.connect(room.id, room.alice.token)
    cases = [
        ({"action": "explode"}, "unknown_action"),
        ({"action": "mute", "target": str(room.bob.pk)}, "missing_field"),
        ({"action": "mute", "target": str(room.bob.pk), "until": "tomorrow"}, "invalid_field"),
        ({"action": "mute", "target": str(room.bob.pk), "until": "2001-01-01T00:00:00Z"}, "invalid_until"),
        ({"action": "hide"}, "missing_field"),
        ({"action": "hide", "target": "not-a-message"}, "not_found"),
        ({"action": "settings", "premoderation": "sometimes"}, "invalid_field"),
        ({"target": "x"}, "missing_field"),
    ]
    for frame, code in cases:
        await alice.send({"type": "moderate", **frame})
        assert (await alice.expect("error"))["code"] == code, frame
    await alice.send({"type": "ping"})
    await alice.expect("pong")  # still open
    await alice.close()


@live
async def test_report_frame_creates_one_report_per_reporter_and_message(room: Room):
    message = await sync_to_async(room.say)(room.bob, "offensive")
    carol = await Ws.connect(room.id, room.carol.token)
    await carol.send({"type": "report", "message_id": str(message.pk), "reason": "offensive"})
    ack = await carol.expect("report.ack")
    assert (ack["message_id"], ack["status"], ack["reason"]) == (str(message.pk), "open", "offensive")
    await carol.send({"type": "report", "message_id": str(message.pk)})
    assert (await carol.expect("report.ack"))["id"] == ack["id"]
    await carol.send({"type": "report", "message_id": "00000000-0000-0000-0000-000000000000"})
    assert (await carol.expect("error"))["code"] == "not_found"
    report = await sync_to_async(Report.objects.get)()
    assert (str(report.pk), report.reporter_id, report.conversation_id) == (ack["id"], room.carol.pk, room.id)
    await carol.close()


@pytest.mark.django_db
def test_report_http_endpoint(room: Room):
    message = room.say(room.bob, "offensive")
    client = Client()
    url = f"/api/conversations/{room.id}/reports"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {room.carol.token}"}
    body = {"message_id": str(message.pk), "reason": "rude"}
    first = client.post(url, body, content_type="application/json", **auth)
    assert first.status_code == 201 and first.json()["status"] == "open"
    again = client.post(url, body, content_type="application/json", **auth)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert client.post(url, body, content_type="application/json").status_code == 401
    missing = client.post(url, {"message_id": "nope"}, content_type="application/json", **auth)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    too_long = client.post(url, {**body, "reason": "x" * 1001}, content_type="application/json", **auth)
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "reason_too_long")
    assert Report.objects.get().reason == "rude"


@live
async def test_the_manager_bot_approves_into_the_same_audit_log(settings):
    settings.CHAT_BOT_MANAGER = "echo"

    def make() -> tuple[Chat, Participant, Participant, Participant]:
        chat, people = Chat.create("Managed", "alice")
        owner, bot = people[0], people[1]
        assert (bot.kind, bot.role) == ("bot", "moderator")
        Conversation.objects.filter(pk=chat.conversation.pk).update(premoderation="all")
        chat.conversation.refresh_from_db()
        return chat, owner, bot, chat.join("bob")

    chat, owner, bot, bob = await sync_to_async(make)()
    alice = await Ws.connect(chat.conversation.pk, owner.token)
    pending = await sync_to_async(chat.save_message)(bob, {"client_id": "p1", "text": "hi bot"})
    last = await sync_to_async(lambda: Conversation.objects.get(pk=chat.conversation.pk).next_seq - 1)()
    record = await sync_to_async(chat.approve_message)(bot, pending)
    shown = await alice.next_message(lambda m: m["id"] == str(pending.pk))
    assert shown["seq"] == last + 1
    row = await sync_to_async(ModerationAction.objects.get)(pk=record.pk)
    assert (row.action, row.actor_participant_id, row.actor_user_id, row.actor_name) == (
        "approve",
        bot.pk,
        None,
        "echo",
    )
    # A bot without the moderator role cannot.
    plain = await sync_to_async(chat.add_bot)("echo")
    other = await sync_to_async(chat.save_message)(bob, {"client_id": "p2", "text": "again"})
    with pytest.raises(Forbidden):
        await sync_to_async(chat.approve_message)(plain, other)
    await alice.close()
