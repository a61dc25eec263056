"""Moderation through the Django admin: each action, posted as the admin posts it (changelist
action -> reason form -> apply, or a change-page button -> reason form), has its live effect on
a connected socket and writes its audit row; permissions are enforced with 403."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Message, ModerationAction, Participant, Report
from tests import moderation_support as support
from tests.moderation_support import (
    Room,
    Ws,
    admin_action,
    admin_button,
    admin_url,
    connect_expecting_close,
    run_admin_action,
)

# Fixtures shared with test_moderation_socket.py.
room, moderator, staff_client = support.room, support.moderator, support.staff_client

live = pytest.mark.django_db(transaction=True)


def audit(action: str, **filters) -> list[ModerationAction]:
    return list(ModerationAction.objects.filter(action=action, **filters))


@pytest.mark.django_db
def test_moderators_group_has_exactly_the_permissions_it_needs():
    from django.contrib.auth.models import Group

    perms = set(Group.objects.get(name="Moderators").permissions.values_list("codename", flat=True))
    views = {
        f"view_{m}" for m in ("conversation", "participant", "message", "attachment", "report", "moderationaction")
    }
    changes = {f"change_{m}" for m in ("conversation", "participant", "message", "report")}
    assert perms == views | changes


@live
async def test_hide_by_admin_action_and_unhide_by_button_reach_the_room(room: Room, staff_client: Client, moderator):
    message = await sync_to_async(room.say)(room.bob, "rude words")
    ws = await Ws.connect(room.id, room.alice.token)

    form, done = await admin_action(staff_client, "message", "hide_selected", [message.pk], reason="rude")
    assert form.status_code == 200 and b'name="reason"' in form.content and b"rude words" in form.content
    assert done.status_code == 302
    deleted = await ws.expect("message.deleted")
    assert deleted == {"type": "message.deleted", "id": str(message.pk), "seq": message.seq}
    [row] = await sync_to_async(audit)("hide", target_message=message)
    assert (row.actor_user_id, row.actor_participant_id, row.reason) == (moderator.pk, None, "rude")
    assert row.conversation_id == room.id

    form, done = await admin_button(staff_client, "message", message.pk, "unhide", reason="fine after all")
    assert form.status_code == 200 and done.status_code == 302
    updated = await ws.expect("message.updated")
    assert updated["message"]["id"] == str(message.pk)
    assert (updated["message"]["hidden"], updated["message"]["text"]) == (False, "rude words")
    assert len(await sync_to_async(audit)("unhide", reason="fine after all")) == 1
    await ws.close()


@live
async def test_approve_and_reject_from_the_pending_queue(room: Room, staff_client: Client, moderator):
    await sync_to_async(Conversation.objects.filter(pk=room.id).update)(premoderation="all")
    pending = await sync_to_async(room.say)(room.bob, "please approve me")
    spam = await sync_to_async(room.say)(room.bob, "spam")
    assert (pending.seq, pending.approval, spam.seq) == (None, "pending", None)
    alice = await Ws.connect(room.id, room.alice.token)
    bob = await Ws.connect(room.id, room.bob.token)

    queue = await sync_to_async(staff_client.get)(admin_url("pendingmessage", "changelist"))
    assert queue.status_code == 200 and b"please approve me" in queue.content
    before = await sync_to_async(room.say)(room.alice, "owner speaks")  # owners are not pre-moderated
    assert (await alice.next_message())["seq"] == before.seq

    _, done = await admin_action(staff_client, "pendingmessage", "approve_selected", [pending.pk], reason="ok")
    assert done.status_code == 302
    shown = await alice.next_message()
    assert (shown["id"], shown["seq"], shown["approval"]) == (str(pending.pk), before.seq + 1, "approved")
    [row] = await sync_to_async(audit)("approve", target_message=pending)
    assert row.actor_user_id == moderator.pk and row.reason == "ok"

    _, done = await admin_action(staff_client, "pendingmessage", "reject_selected", [spam.pk])
    assert done.status_code == 302
    rejected = await bob.expect("message.updated", lambda f: f["message"]["id"] == str(spam.pk))
    assert (rejected["message"]["approval"], rejected["message"]["seq"]) == ("rejected", None)
    # The room never sees the rejected message: the next thing alice sees is the next message.
    after = await sync_to_async(room.say)(room.alice, "next")
    assert (await alice.next_message())["seq"] == after.seq == before.seq + 2
    assert await sync_to_async(Message.objects.filter(pk=spam.pk, seq__isnull=True, approval="rejected").exists)()
    assert len(await sync_to_async(audit)("reject", target_message=spam)) == 1
    await alice.close()
    await bob.close()


@live
async def test_mute_by_button_refuses_sends_with_the_muted_error(room: Room, staff_client: Client):
    bob = await Ws.connect(room.id, room.bob.token)
    until = (timezone.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    form, done = await admin_button(
        staff_client, "participant", room.bob.pk, "mute", reason="cool down", until=until.strftime("%Y-%m-%dT%H:%M")
    )
    assert form.status_code == 200 and b'name="until"' in form.content
    assert done.status_code == 302
    people = await bob.expect(
        "participants", lambda f: any(p["id"] == str(room.bob.pk) and p["muted_until"] for p in f["participants"])
    )
    assert people["type"] == "participants"

    await bob.send({"type": "message.send", "client_id": "m1", "text": "hello?"})
    error = await bob.expect("error")
    assert (error["code"], error["client_id"]) == ("muted", "m1")
    assert error["until"] == until.isoformat() and until.isoformat() in error["detail"]
    [row] = await sync_to_async(audit)("mute", target_participant_id=room.bob.pk)
    assert row.data == {"until": until.isoformat()} and row.reason == "cool down"

    _, done = await admin_action(staff_client, "participant", "unmute_selected", [room.bob.pk])
    assert done.status_code == 302
    await bob.send({"type": "message.send", "client_id": "m2", "text": "back"})
    assert (await bob.expect("message.ack"))["client_id"] == "m2"
    await bob.close()


@live
async def test_mute_in_the_past_is_refused_by_the_form(room: Room, staff_client: Client):
    past = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    _, response = await admin_button(staff_client, "participant", room.bob.pk, "mute", until=past)
    assert response.status_code == 200 and b"in the future" in response.content
    assert not await sync_to_async(ModerationAction.objects.exists)()


@live
async def test_kick_by_admin_action_closes_their_sockets_and_announces_it(room: Room, staff_client: Client):
    alice = await Ws.connect(room.id, room.alice.token)
    bob = await Ws.connect(room.id, room.bob.token)
    _, done = await admin_action(staff_client, "participant", "kick_selected", [room.bob.pk], reason="off topic")
    assert done.status_code == 302
    assert await bob.closed_with() == 4403
    await alice.send({"type": "ping"})  # the close was meant for bob's sockets only
    await alice.expect("pong")
    system = await alice.next_message(lambda m: m["kind"] == "system" and m["data"]["event"] == "kicked")
    assert system["data"]["participant"]["id"] == str(room.bob.pk) and system["data"]["reason"] == "off topic"
    assert len(await sync_to_async(audit)("kick", target_participant_id=room.bob.pk)) == 1
    # A kicked participant's token no longer opens the room.
    error, code = await connect_expecting_close(room.id, room.bob.token)
    assert (error["code"], code) == ("left", 4403)
    await alice.close()


def _join(client: Client, conversation_id) -> tuple[int, dict]:
    response = client.post(
        f"/api/conversations/{conversation_id}/join", {"nickname": "eve"}, content_type="application/json"
    )
    return response.status_code, response.json()


@live
async def test_ban_blocks_rejoin_by_token_user_and_browser_session(room: Room, staff_client: Client):
    # eve joins from a browser (session), dave as a logged-in user.
    eve_browser = Client()
    status, eve = await sync_to_async(_join)(eve_browser, room.id)
    assert status == 201
    dave_user = await sync_to_async(User.objects.create_user)("dave")
    dave_browser = Client()
    await sync_to_async(dave_browser.force_login)(dave_user)
    status, dave = await sync_to_async(_join)(dave_browser, room.id)
    assert status == 201
    eve_ws = await Ws.connect(room.id, eve["token"])

    for pid in (eve["participant"]["id"], dave["participant"]["id"]):
        form, done = await admin_button(staff_client, "participant", pid, "ban", reason="abuse")
        assert form.status_code == 200 and done.status_code == 302
    assert await eve_ws.closed_with() == 4403
    assert len(await sync_to_async(audit)("ban", reason="abuse")) == 2

    # Not by token, not by the session cookie, not by joining again from the same browser.
    error, code = await connect_expecting_close(room.id, eve["token"])
    assert (error["code"], code) == ("banned", 4403)
    cookie = f"sessionid={eve_browser.cookies['sessionid'].value}"
    error, code = await connect_expecting_close(room.id, cookie=cookie)
    assert (error["code"], code) == ("banned", 4403)
    status, body = await sync_to_async(_join)(eve_browser, room.id)
    assert (status, body["error"]["code"]) == (403, "banned")
    # Not as the same user, even from another browser.
    other_browser = Client()
    await sync_to_async(other_browser.force_login)(dave_user)
    status, body = await sync_to_async(_join)(other_browser, room.id)
    assert (status, body["error"]["code"]) == (403, "banned")
    # A stranger still can.
    status, _ = await sync_to_async(_join)(Client(), room.id)
    assert status == 201
    # Unbanned, eve may join again from her browser (as a new participant).
    _, done = await admin_action(staff_client, "participant", "unban_selected", [eve["participant"]["id"]])
    assert done.status_code == 302
    status, again = await sync_to_async(_join)(eve_browser, room.id)
    assert status == 201 and again["participant"]["id"] != eve["participant"]["id"]
    assert len(await sync_to_async(audit)("unban")) == 1


@live
async def test_end_by_admin_action_makes_the_room_read_only(room: Room, staff_client: Client):
    alice = await Ws.connect(room.id, room.alice.token)
    _, done = await admin_action(staff_client, "conversation", "end_selected", [room.id], reason="closing time")
    assert done.status_code == 302
    ended = await alice.next_message(lambda m: m["kind"] == "system")
    assert (ended["data"]["event"], ended["data"]["reason"]) == ("ended", "closing time")
    await alice.expect("conversation.ended")
    await alice.send({"type": "message.send", "client_id": "late", "text": "anyone?"})
    assert (await alice.expect("error"))["code"] == "conversation_ended"
    [row] = await sync_to_async(audit)("end", conversation_id=room.id)
    assert row.reason == "closing time"
    await alice.close()


@live
async def test_settings_by_button_are_announced_and_enforced(room: Room, staff_client: Client):
    alice = await Ws.connect(room.id, room.alice.token)
    form, done = await admin_button(
        staff_client, "conversation", room.id, "settings", reason="raid", premoderation="all", join_policy="invite"
    )
    assert form.status_code == 200 and b'name="premoderation"' in form.content
    assert done.status_code == 302
    updated = await alice.expect("conversation.updated")
    assert (updated["conversation"]["premoderation"], updated["conversation"]["join_policy"]) == ("all", "invite")
    [row] = await sync_to_async(audit)("settings")
    assert row.data == {
        "premoderation": {"before": "none", "after": "all"},
        "join_policy": {"before": "link", "after": "invite"},
    }
    status, body = await sync_to_async(_join)(Client(), room.id)
    assert (status, body["error"]["code"]) == (403, "invite_only")
    message = await sync_to_async(room.say)(room.bob, "now moderated")
    assert message.approval == "pending"
    await alice.close()


@pytest.mark.django_db
def test_a_user_without_the_permission_gets_403(room: Room):
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="conversations",
            codename__in=["view_message", "view_participant", "view_conversation", "view_report"],
        )
    )
    client = Client()
    client.force_login(viewer)
    message = room.say(room.bob, "hello")
    assert client.get(admin_url("message", "change", message.pk)).status_code == 200
    # Changelist actions, change-page buttons and exports each need their permission.
    form, _ = run_admin_action(client, "message", "hide_selected", [message.pk])
    assert form.status_code == 403
    assert client.get(admin_url("message", "moderate", message.pk, "hide")).status_code == 403
    assert client.post(admin_url("message", "moderate", message.pk, "hide"), {"reason": ""}).status_code == 403
    assert client.post(admin_url("participant", "moderate", room.bob.pk, "ban"), {}).status_code == 403
    assert client.post(admin_url("conversation", "moderate", room.id, "end"), {}).status_code == 403
    report = room.chat.report_message(room.carol, str(message.pk), "spam")
    assert client.post(admin_url("report", "moderate", report.pk, "report_hide"), {}).status_code == 403
    assert client.get(admin_url("moderationaction", "changelist")).status_code == 403
    assert not Message.objects.get(pk=message.pk).hidden
    assert not ModerationAction.objects.exists()
    # The single door checks too: Chat refuses a staff user without the permission.
    from conversations.errors import Forbidden

    with pytest.raises(Forbidden):
        room.chat.hide_message(viewer, message)
    # And a user who is not staff never reaches the admin.
    member = User.objects.create_user("member")
    client.force_login(member)
    assert client.get(admin_url("message", "moderate", message.pk, "hide")).status_code == 302


@live
async def test_report_queue_counts_and_hiding_from_it(room: Room, staff_client: Client, moderator):
    message = await sync_to_async(room.say)(room.bob, "nasty")
    other = await sync_to_async(room.say)(room.bob, "meh")
    first = await sync_to_async(room.chat.report_message)(room.alice, str(message.pk), "insult")
    await sync_to_async(room.chat.report_message)(room.carol, str(message.pk), "insult too")
    single = await sync_to_async(room.chat.report_message)(room.carol, str(other.pk), "boring")

    queue = await sync_to_async(staff_client.get)(admin_url("report", "changelist"))
    assert queue.status_code == 200
    counts = {str(r.pk): r._reports_on_message for r in queue.context["cl"].result_list}
    assert counts[str(first.pk)] == 2 and counts[str(single.pk)] == 1
    assert [r.message_id for r in queue.context["cl"].result_list][:2] == [message.pk, message.pk]

    alice = await Ws.connect(room.id, room.alice.token)
    _, done = await admin_action(staff_client, "report", "report_hide_selected", [first.pk], reason="insult")
    assert done.status_code == 302
    assert (await alice.expect("message.deleted"))["id"] == str(message.pk)
    statuses = await sync_to_async(lambda: sorted(Report.objects.values_list("message_id", "status")))()
    assert sorted(statuses) == sorted([(message.pk, "resolved"), (message.pk, "resolved"), (other.pk, "open")])
    assert len(await sync_to_async(audit)("hide", target_message=message)) == 1
    assert len(await sync_to_async(audit)("resolve_report", actor_user=moderator)) == 2

    _, done = await admin_action(staff_client, "report", "dismiss_selected", [single.pk])
    assert done.status_code == 302
    assert await sync_to_async(lambda: Report.objects.get(pk=single.pk).status)() == "dismissed"
    queue = await sync_to_async(staff_client.get)(admin_url("report", "changelist"))
    assert list(queue.context["cl"].result_list) == []  # the queue shows open reports only
    await alice.close()


@pytest.mark.django_db
def test_transcript_export_marks_hidden_and_pending_messages(room: Room, staff_client: Client, moderator):
    shown = room.say(room.bob, "visible")
    hidden = room.say(room.bob, "secret <b>bold</b>")
    room.chat.hide_message(moderator, hidden, "too much")
    Conversation.objects.filter(pk=room.id).update(premoderation="all")
    room.chat.conversation.refresh_from_db()
    pending = room.say(room.carol, "waiting")

    response = staff_client.get(admin_url("conversation", "transcript_json", room.id))
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    body = json.loads(response.content)
    by_id = {m["id"]: m for m in body["messages"]}
    assert by_id[str(shown.pk)]["marks"] == []
    assert (by_id[str(hidden.pk)]["marks"], by_id[str(hidden.pk)]["text"]) == (["hidden"], "secret <b>bold</b>")
    assert (by_id[str(pending.pk)]["marks"], by_id[str(pending.pk)]["seq"]) == (["pending"], None)
    assert body["messages"][-1]["id"] == str(pending.pk)
    assert [a["action"] for a in body["moderation"]] == ["hide"]
    assert {p["name"] for p in body["participants"]} == {"alice", "bob", "carol"}

    response = staff_client.get(admin_url("conversation", "transcript_html", room.id))
    html = response.content.decode()
    assert response.status_code == 200 and "<script" not in html
    assert "secret &lt;b&gt;bold&lt;/b&gt;" in html
    assert '<span class="mark">hidden</span>' in html and '<span class="mark">pending</span>' in html

    page = staff_client.get(admin_url("conversation", "change", room.id))
    assert page.status_code == 200
    for link in (
        "transcript.json",
        "transcript.html",
        "moderate/end/",
        "moderate/settings/",
        f"{hidden.pk}/moderate/unhide/",
    ):
        assert link in page.content.decode()
    for _label, url in page.context["links"]:  # pending queue, reports, audit log, exports
        assert staff_client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_audit_log_is_read_only_and_filterable(room: Room, staff_client: Client, moderator):
    message = room.say(room.bob, "x")
    room.chat.hide_message(moderator, message, "one")
    room.chat.mute(moderator, room.carol, timezone.now() + timedelta(minutes=5), "two")
    other = Room()
    other.chat.end_conversation(moderator, "three")
    url = admin_url("moderationaction", "changelist")

    def listed(query: str) -> list[str]:
        response = staff_client.get(url + query)
        assert response.status_code == 200
        return sorted(a.action for a in response.context["cl"].result_list)

    assert listed("") == ["end", "hide", "mute"]
    assert listed("?action__exact=mute") == ["mute"]
    assert listed(f"?conversation__id__exact={room.id}") == ["hide", "mute"]
    assert listed(f"?actor_user__id__exact={moderator.pk}") == ["end", "hide", "mute"]
    assert listed("?actor_kind=staff") == ["end", "hide", "mute"]
    assert listed("?actor_kind=participant") == []
    row = ModerationAction.objects.get(action="hide")
    page = staff_client.get(admin_url("moderationaction", "change", row.pk))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert staff_client.get(url + "add/").status_code == 403
    assert staff_client.post(admin_url("moderationaction", "delete", row.pk), {"post": "yes"}).status_code == 403
    assert ModerationAction.objects.count() == 3


@pytest.mark.django_db
def test_change_pages_offer_the_buttons_that_apply(room: Room, staff_client: Client):
    message = room.say(room.bob, "hi")
    page = staff_client.get(admin_url("message", "change", message.pk)).content.decode()
    assert f"{message.pk}/moderate/hide/" in page and "/moderate/approve/" not in page
    page = staff_client.get(admin_url("participant", "change", room.bob.pk)).content.decode()
    for op in ("mute", "kick", "ban"):
        assert f"{room.bob.pk}/moderate/{op}/" in page
    assert "/moderate/unban/" not in page
    assert Participant.objects.get(pk=room.bob.pk).is_active
