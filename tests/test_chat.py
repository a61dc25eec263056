"""The Chat controller: every change of a conversation, through the one door."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from conversations import events as events_module
from conversations import protocol
from conversations.auth import participant_from_token
from conversations.chat import Chat
from conversations.errors import (
    Banned,
    ConversationEnded,
    ConversationFull,
    Forbidden,
    InvalidInput,
    Muted,
    NotParticipant,
    RateLimited,
    TextTooLong,
    UnknownBot,
)
from conversations.models import Conversation, Message, Participant
from conversations.uploads import store_upload
from tests.foundation_helpers import PNG, TEXT, upload

pytestmark = pytest.mark.django_db

BOTS = {
    "echo": {"class": "bots.builtin.echo.EchoBot", "description": "Repeats what you say."},
    "helper": {"class": "bots.builtin.echo.EchoBot", "description": "Helps.", "trigger": "mention"},
    "boss": {"class": "bots.builtin.echo.EchoBot", "description": "Manages."},
}


@pytest.fixture
def bots(settings):
    settings.CHAT_INSTALLED_BOTS = BOTS
    settings.CHAT_BOT_MANAGER = None
    return settings


def events(chat: Chat) -> list[tuple[int, str, str | None]]:
    """(seq, event, participant name) of the conversation's system messages, in seq order."""
    rows = Message.objects.filter(conversation_id=chat.conversation.pk, kind=Message.Kind.SYSTEM).order_by("seq")
    return [(m.seq, m.data["event"], (m.data.get("participant") or {}).get("name")) for m in rows]


def seqs(chat: Chat) -> list[int]:
    return list(
        Message.objects.filter(conversation_id=chat.conversation.pk, seq__isnull=False)
        .order_by("seq")
        .values_list("seq", flat=True)
    )


def say(chat: Chat, participant: Participant, text: str = "hello", **fields) -> Message:
    return chat.save_message(participant, {"text": text, **fields})


# ---- creation -------------------------------------------------------------------------------


def test_create_returns_human_first_then_one_participant_per_bot(bots):
    chat, participants = Chat.create("Room", "alice", ["echo", "helper"])
    assert [(p.kind, p.name, p.bot_name, p.role) for p in participants] == [
        ("human", "alice", "", "owner"),
        ("bot", "echo", "echo", "member"),
        ("bot", "helper", "helper", "member"),
    ]
    assert events(chat) == [
        (1, "created", "alice"),
        (2, "joined", "alice"),
        (3, "joined", "echo"),
        (4, "joined", "helper"),
    ]
    assert seqs(chat) == [1, 2, 3, 4]
    chat.conversation.refresh_from_db()
    assert chat.conversation.next_seq == 5
    assert chat.conversation.name == "Room" and chat.conversation.is_open


def test_on_create_conversation_fills_a_given_conversation_with_the_default_echo_bot():
    conversation = Conversation.objects.create(name="given")
    participants = Chat.on_create_conversation("bob", ["echo"], conversation)
    assert [p.kind for p in participants] == ["human", "bot"]
    assert all(p.conversation_id == conversation.pk for p in participants)
    assert events(Chat(conversation)) == [(1, "created", "bob"), (2, "joined", "bob"), (3, "joined", "echo")]


def test_every_created_participant_gets_a_working_one_time_token(bots):
    _, participants = Chat.create("Room", "alice", ["echo"])
    for p in participants:
        assert participant_from_token(p.token) == p
        stored = Participant.objects.get(pk=p.pk)
        assert stored.token_hash and p.token not in stored.token_hash


def test_create_drops_repeated_bots_and_adds_the_manager_as_moderator(bots):
    bots.CHAT_BOT_MANAGER = "boss"
    chat, participants = Chat.create("Room", "alice", ["echo", "echo"])
    assert [(p.bot_name, p.role) for p in participants] == [("", "owner"), ("echo", "member"), ("boss", "moderator")]
    assert [e for _, e, _ in events(chat)] == ["created", "joined", "joined", "joined"]


def test_create_with_an_unknown_bot_creates_nothing(bots):
    before = Conversation.objects.count()
    with pytest.raises(UnknownBot) as info:
        Chat.create("Room", "alice", ["echo", "nosuchbot"])
    assert "nosuchbot" in info.value.detail and info.value.code == "unknown_bot"
    assert Conversation.objects.count() == before


def test_create_beyond_max_participants_is_refused(bots):
    bots.CHAT_LIMITS = {"MAX_PARTICIPANTS": 2}
    with pytest.raises(ConversationFull):
        Chat.create("Room", "alice", ["echo", "helper"])


def test_create_cleans_names():
    chat, participants = Chat.create("  \x00\x07  ", "  \x1bbob\x7f  ", [])
    assert chat.conversation.name == "Conversation"
    assert participants[0].name == "bob"


# ---- get_chat -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [uuid.uuid4(), str(uuid.uuid4()), "not-a-uuid", "", "12345", None])
def test_get_chat_is_none_for_unknown_or_malformed_ids(bad):
    assert Chat.get_chat(bad) is None


def test_get_chat_builds_a_fresh_controller_from_the_database(make_chat):
    chat, _owner = make_chat()
    first, second = Chat.get_chat(chat.conversation.pk), Chat.get_chat(str(chat.conversation.pk))
    assert first is not second and first is not chat
    assert first.conversation.pk == second.conversation.pk == chat.conversation.pk


def test_state_lives_in_the_database_not_in_a_controller(make_chat):
    """A controller built before another one ended the conversation still sees the end."""
    chat, owner = make_chat()
    stale = Chat.get_chat(chat.conversation.pk)
    Chat.get_chat(chat.conversation.pk).end()
    assert stale.conversation.status == "open"  # its in-memory copy is stale ...
    with pytest.raises(ConversationEnded):  # ... and yet it refuses
        say(stale, owner)
    with pytest.raises(ConversationEnded):
        stale.join("late")


# ---- join -----------------------------------------------------------------------------------


def test_join_adds_a_member_with_a_joined_message(make_chat):
    chat, _owner = make_chat()
    bob = chat.join("bob")
    assert (bob.name, bob.kind, bob.role, bob.conversation_id) == ("bob", "human", "member", chat.conversation.pk)
    assert events(chat)[-1] == (3, "joined", "bob")
    assert participant_from_token(bob.token) == bob


@pytest.mark.parametrize("nickname", ["", None, "   ", "\x00\x01"])
def test_join_with_an_empty_nickname_gets_a_generated_one(make_chat, nickname):
    chat, _ = make_chat()
    guest = chat.join(nickname)
    assert guest.name.startswith("Guest-") and len(guest.name) > len("Guest-")


def test_join_truncates_a_long_nickname(make_chat):
    chat, _ = make_chat()
    assert len(chat.join("x" * 500).name) == 64


def test_join_an_ended_conversation_is_refused(make_chat):
    chat, _ = make_chat()
    chat.end()
    count = Participant.objects.count()
    with pytest.raises(ConversationEnded):
        chat.join("late")
    assert Participant.objects.count() == count


def test_join_an_invite_only_conversation_is_refused(make_chat):
    chat, _ = make_chat()
    Conversation.objects.filter(pk=chat.conversation.pk).update(join_policy=Conversation.JoinPolicy.INVITE)
    with pytest.raises(Forbidden) as info:
        Chat.get_chat(chat.conversation.pk).join("bob")
    assert info.value.code == "invite_only"


def test_a_banned_user_cannot_join_again(make_chat):
    chat, _ = make_chat()
    user = get_user_model().objects.create_user("mallory", password="x")
    first = chat.join("mallory", user=user)
    Participant.objects.filter(pk=first.pk).update(banned=True)
    with pytest.raises(Banned):
        chat.join("mallory again", user=user)
    other = get_user_model().objects.create_user("bob", password="x")
    assert chat.join("bob", user=other).user == other


def test_join_a_full_conversation_is_refused(make_chat, settings):
    settings.CHAT_LIMITS = {"MAX_PARTICIPANTS": 2}
    chat, _ = make_chat()
    chat.join("bob")
    with pytest.raises(ConversationFull):
        chat.join("carol")
    # someone who left frees a place
    chat.leave(Participant.objects.get(conversation_id=chat.conversation.pk, name="bob"))
    assert chat.join("carol").name == "carol"


def test_add_bot(bots):
    chat, _ = Chat.create("Room", "alice", [])
    bot = chat.add_bot("helper")
    assert (bot.kind, bot.bot_name) == ("bot", "helper")
    assert events(chat)[-1] == (3, "joined", "helper")
    with pytest.raises(UnknownBot):
        chat.add_bot("nosuchbot")


def test_generate_participant_joined_system_message(make_chat):
    chat, owner = make_chat()
    message = chat.generate_participant_joined_system_message(owner.id)
    assert (message.kind, message.sender, message.seq) == ("system", None, 3)
    assert message.data == {"event": "joined", "participant": {"id": str(owner.id), "name": "alice", "kind": "human"}}


# ---- leave and end --------------------------------------------------------------------------


def test_leave_writes_a_left_message_once(make_chat):
    chat, _owner = make_chat()
    bob = chat.join("bob")
    message = chat.leave(bob)
    assert (message.seq, message.data["event"], message.data["participant"]["name"]) == (4, "left", "bob")
    bob.refresh_from_db()
    assert bob.left_at is not None and not bob.is_active
    assert chat.leave(bob) is None  # idempotent
    assert [e for _, e, _ in events(chat)] == ["created", "joined", "joined", "left"]


def test_a_participant_who_left_cannot_write(make_chat):
    chat, owner = make_chat()
    chat.leave(owner)
    with pytest.raises(NotParticipant) as info:
        say(chat, owner)
    assert info.value.code == "left"


def test_leave_another_conversations_participant_is_refused(make_chat):
    chat, _ = make_chat()
    _, stranger = make_chat("Other", "stranger")
    with pytest.raises(NotParticipant):
        chat.leave(stranger)
    stranger.refresh_from_db()
    assert stranger.left_at is None


def test_leaving_an_ended_conversation_is_refused_and_changes_nothing(make_chat):
    """An ended conversation is read-only: even a "left" message would be a change."""
    chat, owner = make_chat()
    chat.end()
    with pytest.raises(ConversationEnded):
        chat.leave(owner)
    owner.refresh_from_db()
    assert owner.left_at is None


def test_end_writes_an_ended_message_then_refuses_messages(make_chat):
    chat, owner = make_chat()
    say(chat, owner, "before")
    message = chat.end(by=owner, reason="done")
    assert (message.seq, message.kind, message.sender) == (4, "system", None)
    assert message.data["event"] == "ended" and message.data["reason"] == "done"
    stored = Conversation.objects.get(pk=chat.conversation.pk)
    assert stored.status == "ended" and stored.ended_at is not None
    with pytest.raises(ConversationEnded):
        say(chat, owner, "after")
    assert chat.end() is None  # ending twice does nothing
    assert seqs(chat) == [1, 2, 3, 4]


# ---- save_message ---------------------------------------------------------------------------


def test_save_message_numbers_messages_in_order(make_chat):
    chat, owner = make_chat()
    bob = chat.join("bob")
    first, second = say(chat, owner, "one"), say(chat, bob, "two")
    assert (first.seq, second.seq) == (4, 5)
    assert first.created and first.sender == owner and first.kind == "text" and first.approval == "auto"
    assert seqs(chat) == [1, 2, 3, 4, 5]


def test_save_message_is_idempotent_on_client_id(make_chat):
    chat, owner = make_chat()
    first = say(chat, owner, "hi", client_id="c-1")
    again = say(chat, owner, "something else", client_id="c-1")
    assert again.pk == first.pk and again.seq == first.seq and again.text == "hi"
    assert first.created and not again.created
    assert Message.objects.filter(sender=owner).count() == 1
    assert say(chat, owner, "hi", client_id="c-2").pk != first.pk


def test_a_resend_takes_no_seq_and_is_answered_after_a_refusal(make_chat):
    # The idempotency lookup runs after the INSERT fails (chat.save_message): the seq that
    # INSERT took rolls back with it, and refusals that came after do not hide the message.
    chat, owner = make_chat()
    first = say(chat, owner, "hi", client_id="r-1")
    for _ in range(3):
        assert say(chat, owner, "again", client_id="r-1").pk == first.pk
    assert say(chat, owner, "next", client_id="r-2").seq == first.seq + 1
    assert seqs(chat) == list(range(1, first.seq + 2))
    chat.end()
    again = say(chat, owner, "after the end", client_id="r-1")
    assert again.pk == first.pk and not again.created
    with pytest.raises(ConversationEnded):
        say(chat, owner, "new after the end", client_id="r-3")


def test_another_sender_may_reuse_a_client_id(make_chat):
    chat, owner = make_chat()
    bob = chat.join("bob")
    assert say(chat, owner, client_id="same").pk != say(chat, bob, client_id="same").pk


@pytest.mark.parametrize("client_id", ["", "x" * 65, 5])
def test_invalid_client_id_is_refused(make_chat, client_id):
    chat, owner = make_chat()
    with pytest.raises(InvalidInput) as info:
        say(chat, owner, client_id=client_id)
    assert info.value.code == "invalid_client_id"


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_message_is_refused(make_chat, text):
    chat, owner = make_chat()
    with pytest.raises(InvalidInput) as info:
        say(chat, owner, text)
    assert info.value.code == "empty_message"
    assert not Message.objects.filter(sender=owner).exists()


def test_non_mapping_or_non_string_text_is_refused(make_chat):
    chat, owner = make_chat()
    with pytest.raises(InvalidInput):
        chat.save_message(owner, ["hello"])
    with pytest.raises(InvalidInput) as info:
        chat.save_message(owner, {"text": 42})
    assert info.value.code == "invalid_text"


def test_text_length_limit(make_chat, settings):
    settings.CHAT_LIMITS = {"MAX_TEXT_LENGTH": 10}
    chat, owner = make_chat()
    assert say(chat, owner, "x" * 10).text == "x" * 10
    with pytest.raises(TextTooLong) as info:
        say(chat, owner, "x" * 11)
    assert (info.value.code, info.value.status) == ("text_too_long", 413)
    assert "10" in info.value.detail


def test_rate_limit_per_participant(make_chat, settings):
    settings.CHAT_LIMITS = {"RATE_LIMIT_MESSAGES": 3, "RATE_LIMIT_WINDOW": 60}
    chat, owner = make_chat()
    bob = chat.join("bob")
    for i in range(3):
        say(chat, owner, f"m{i}", client_id=f"c{i}")
    with pytest.raises(RateLimited) as info:
        say(chat, owner, "one too many")
    assert (info.value.code, info.value.status) == ("rate_limited", 429)
    assert say(chat, owner, "m0", client_id="c0").seq == 4  # a resend is still answered
    assert say(chat, bob, "bob is not limited by alice").sender == bob


def test_messages_older_than_the_rate_window_do_not_count(make_chat, settings):
    settings.CHAT_LIMITS = {"RATE_LIMIT_MESSAGES": 2, "RATE_LIMIT_WINDOW": 10}
    chat, owner = make_chat()
    say(chat, owner, "a")
    say(chat, owner, "b")
    Message.objects.filter(sender=owner).update(created_at=timezone.now() - timedelta(seconds=11))
    assert say(chat, owner, "c").seq == 5


def test_muted_and_banned_participants_cannot_write(make_chat):
    chat, _owner = make_chat()
    bob, carol = chat.join("bob"), chat.join("carol")
    Participant.objects.filter(pk=bob.pk).update(muted_until=timezone.now() + timedelta(minutes=5))
    Participant.objects.filter(pk=carol.pk).update(banned=True)
    with pytest.raises(Muted):
        say(chat, bob)  # the in-memory object is stale: the database is read
    with pytest.raises(Banned):
        say(chat, carol)
    Participant.objects.filter(pk=bob.pk).update(muted_until=timezone.now() - timedelta(seconds=1))
    assert say(chat, bob).sender == bob  # a mute that expired no longer holds


def test_participant_of_another_conversation_cannot_write(make_chat):
    chat, _ = make_chat()
    _, stranger = make_chat("Other", "stranger")
    with pytest.raises(NotParticipant):
        say(chat, stranger)
    assert not Message.objects.filter(conversation_id=chat.conversation.pk, sender=stranger).exists()


def test_quote_a_message_of_the_same_conversation(make_chat):
    chat, owner = make_chat()
    original = say(chat, owner, "original")
    reply = say(chat, owner, "reply", quoted_message_id=str(original.pk))
    assert reply.quoted_message_id == original.pk


@pytest.mark.parametrize("quote", ["elsewhere", "missing", "malformed"])
def test_quote_from_another_conversation_or_unknown_is_refused(make_chat, quote):
    chat, owner = make_chat()
    other_chat, stranger = make_chat("Other", "stranger")
    foreign = say(other_chat, stranger, "secret")
    quoted = {"elsewhere": str(foreign.pk), "missing": str(uuid.uuid4()), "malformed": "nope"}[quote]
    with pytest.raises(InvalidInput) as info:
        say(chat, owner, "quoting", quoted_message_id=quoted)
    assert info.value.code == "invalid_quote"


def test_kinds_a_human_and_a_bot_may_send(bots):
    chat, (alice, echo) = Chat.create("Room", "alice", ["echo"])
    options = {"options": [{"label": "Yes", "value": "y"}]}
    for kind in ("options", "system", "table"):
        with pytest.raises(InvalidInput) as info:
            say(chat, alice, "x", kind=kind, data=options)
        assert info.value.code == "invalid_kind"
    assert say(chat, echo, "pick", kind="options", data=options).kind == "options"
    with pytest.raises(InvalidInput):
        say(chat, echo, "x", kind="system")


def test_location_messages_are_validated(make_chat):
    chat, owner = make_chat()
    ok = say(chat, owner, "", kind="location", data={"latitude": 52.5, "longitude": 13.4})
    assert ok.kind == "location" and ok.data["latitude"] == 52.5
    for bad in (
        {"latitude": 91, "longitude": 0},
        {"latitude": "52", "longitude": 13},
        {"latitude": True, "longitude": 1},
    ):
        with pytest.raises(InvalidInput) as info:
            say(chat, owner, "", kind="location", data=bad)
        assert info.value.code == "invalid_location"


def test_data_must_be_an_object(make_chat):
    chat, owner = make_chat()
    with pytest.raises(InvalidInput) as info:
        say(chat, owner, "x", data=["not", "an", "object"])
    assert info.value.code == "invalid_data"


# ---- attachments in messages ----------------------------------------------------------------


def test_attach_own_unused_upload(make_chat):
    chat, owner = make_chat()
    picture = store_upload(chat, owner, upload("cat.png", PNG, 200))
    message = chat.save_message(owner, {"text": "", "attachments": [str(picture.pk)]})
    assert message.kind == "image"  # a text message with a picture is an image message
    picture.refresh_from_db()
    assert picture.message_id == message.pk


def test_attachment_of_someone_else_is_refused(make_chat):
    chat, owner = make_chat()
    bob = chat.join("bob")
    bobs = store_upload(chat, bob, upload("notes.txt", TEXT))
    with pytest.raises(InvalidInput) as info:
        chat.save_message(owner, {"text": "mine now", "attachments": [str(bobs.pk)]})
    assert info.value.code == "invalid_attachments"
    bobs.refresh_from_db()
    assert bobs.message_id is None
    assert not Message.objects.filter(sender=owner).exists()


def test_attachment_already_used_is_refused_and_consumes_no_seq(make_chat):
    chat, owner = make_chat()
    file = store_upload(chat, owner, upload("notes.txt", TEXT))
    first = chat.save_message(owner, {"text": "one", "attachments": [str(file.pk)]})
    with pytest.raises(InvalidInput) as info:
        chat.save_message(owner, {"text": "two", "attachments": [str(file.pk)]})
    assert info.value.code == "invalid_attachments"
    assert say(chat, owner, "three").seq == first.seq + 1  # no gap left by the refusal


@pytest.mark.parametrize("attachments", [["not-a-uuid"], "abc", [1]])
def test_malformed_attachment_ids_are_refused(make_chat, attachments):
    chat, owner = make_chat()
    with pytest.raises(InvalidInput) as info:
        chat.save_message(owner, {"text": "x", "attachments": attachments})
    assert info.value.code == "invalid_attachments"


def test_unknown_attachment_id_is_refused(make_chat):
    chat, owner = make_chat()
    with pytest.raises(InvalidInput) as info:
        chat.save_message(owner, {"text": "x", "attachments": [str(uuid.uuid4())]})
    assert info.value.code == "invalid_attachments"


def test_too_many_attachments_per_message(make_chat, settings):
    settings.CHAT_LIMITS = {"MAX_ATTACHMENTS_PER_MESSAGE": 2}
    chat, owner = make_chat()
    files = [str(store_upload(chat, owner, upload(f"{i}.txt", TEXT)).pk) for i in range(3)]
    with pytest.raises(InvalidInput) as info:
        chat.save_message(owner, {"text": "x", "attachments": files})
    assert info.value.code == "too_many_attachments"
    assert chat.save_message(owner, {"text": "x", "attachments": files[:2]}).attachments.count() == 2


# ---- premoderation --------------------------------------------------------------------------


def test_premoderated_messages_wait_without_a_seq(make_chat):
    chat, owner = make_chat()
    bob = chat.join("bob")
    Conversation.objects.filter(pk=chat.conversation.pk).update(premoderation=Conversation.Premoderation.ALL)
    pending = say(chat, bob, "needs approval")
    assert (pending.seq, pending.approval) == (None, "pending")
    shown = say(chat, owner, "the owner is not premoderated")
    assert (shown.seq, shown.approval) == (4, "auto")  # no gap for the pending one
    messages, _ = chat.history()
    assert pending.pk not in {m.pk for m in messages}


def test_premoderation_of_bots_only(bots):
    chat, (_alice, echo) = Chat.create("Room", "alice", ["echo"])
    bob = chat.join("bob")
    Conversation.objects.filter(pk=chat.conversation.pk).update(premoderation=Conversation.Premoderation.BOTS)
    assert say(chat, echo, "bot says").approval == "pending"
    assert say(chat, bob, "human says").approval == "auto"


def test_premoderated_message_in_an_ended_conversation_is_refused(make_chat):
    chat, _owner = make_chat()
    bob = chat.join("bob")
    Conversation.objects.filter(pk=chat.conversation.pk).update(premoderation=Conversation.Premoderation.ALL)
    chat.end()
    with pytest.raises(ConversationEnded):
        say(chat, bob)


# ---- reading --------------------------------------------------------------------------------


def test_mark_read_never_moves_back(make_chat):
    chat, owner = make_chat()
    for i in range(5):
        say(chat, owner, f"m{i}")
    assert chat.mark_read(owner, 5) == 5
    stale = Participant.objects.get(pk=owner.pk)
    Participant.objects.filter(pk=owner.pk).update(last_read_seq=6)
    assert chat.mark_read(stale, 3) == 6  # answers the stored mark, not the stale one
    owner.refresh_from_db()
    assert owner.last_read_seq == 6
    with pytest.raises(InvalidInput):
        chat.mark_read(owner, -1)


def test_mark_read_stops_at_the_last_message(make_chat):
    """A read mark past the newest message (or past any integer the database holds) is
    clamped to the newest seq instead of failing."""
    chat, owner = make_chat()
    assert chat.mark_read(owner, 2**70) == 2
    owner.refresh_from_db()
    assert owner.last_read_seq == 2


def test_mark_read_of_another_conversation_is_refused(make_chat):
    chat, _ = make_chat()
    _, stranger = make_chat("Other", "stranger")
    with pytest.raises(NotParticipant):
        chat.mark_read(stranger, 1)


@pytest.fixture
def twelve(make_chat):
    """A conversation with seqs 1..12 (2 system messages, then 10 texts)."""
    chat, owner = make_chat()
    for i in range(10):
        say(chat, owner, f"m{i}")
    return chat


def page(chat: Chat, **kwargs) -> tuple[list[int], bool]:
    messages, has_more = chat.history(**kwargs)
    return [m.seq for m in messages], has_more


def test_history_newest_page_first(twelve):
    assert page(twelve) == (list(range(1, 13)), False)
    assert page(twelve, limit=5) == ([8, 9, 10, 11, 12], True)


def test_history_scroll_back_with_before_seq(twelve):
    assert page(twelve, before_seq=8, limit=5) == ([3, 4, 5, 6, 7], True)
    assert page(twelve, before_seq=3, limit=5) == ([1, 2], False)


def test_history_catch_up_with_after_seq(twelve):
    assert page(twelve, after_seq=3, limit=4) == ([4, 5, 6, 7], True)
    assert page(twelve, after_seq=10, limit=4) == ([11, 12], False)
    assert page(twelve, after_seq=12) == ([], False)


def test_history_between_after_and_before(twelve):
    assert page(twelve, after_seq=2, before_seq=6) == ([3, 4, 5], False)


def test_history_limit_is_clamped(twelve):
    assert page(twelve, limit=0) == ([12], True)
    assert len(page(twelve, limit=10_000)[0]) == 12


def test_history_survives_out_of_range_seqs(twelve):
    assert page(twelve, after_seq=2**70) == ([], False)
    assert page(twelve, before_seq=2**70, limit=2) == ([11, 12], True)
    assert page(twelve, after_seq=-(2**70), limit=2) == ([1, 2], True)


def test_history_hides_nothing_of_another_conversation(make_chat, twelve):
    other, stranger = make_chat("Other", "stranger")
    say(other, stranger, "elsewhere")
    assert all(m.conversation_id == twelve.conversation.pk for m in twelve.history(limit=500)[0])


# ---- options --------------------------------------------------------------------------------


def test_choose_option_answers_with_a_quoting_message(bots):
    chat, (alice, echo) = Chat.create("Room", "alice", ["echo"])
    offer = say(chat, echo, "Pick", kind="options", data={"options": [{"label": "Yes", "value": "y"}]})
    answer = chat.choose_option(alice, str(offer.pk), "y", client_id="choice-1")
    assert (answer.text, answer.quoted_message_id, answer.sender) == ("Yes", offer.pk, alice)
    assert answer.data["option"] == {"message_id": str(offer.pk), "value": "y"}
    for message_id, value in ((str(offer.pk), "n"), ("nope", "y"), (str(uuid.uuid4()), "y")):
        with pytest.raises(InvalidInput) as info:
            chat.choose_option(alice, message_id, value)
        assert info.value.code == "invalid_option"


# ---- events after commit and delivery to bots -----------------------------------------------


def test_events_are_sent_only_after_commit(make_chat, django_capture_on_commit_callbacks):
    chat, owner = make_chat()
    with django_capture_on_commit_callbacks() as callbacks:
        say(chat, owner)
    assert callbacks  # fan-out waits for the commit
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(InvalidInput):
        say(chat, owner, "")
    assert callbacks == []  # a refusal sends nothing


@pytest.fixture
def handed_to_bots():
    """Every delivery Chat hands to the bots side (``events.send_to_bots``), in order.

    Recorded through the sink hook the bots app itself registers (with no planner: every
    delivery goes through the sink); the previous sink and planner (the bots app's outbox) are
    put back afterwards.
    """
    deliveries: list[dict] = []
    previous = events_module._bot_sink, events_module.bot_planner()
    events_module.register_bot_sink(lambda payload, **known: deliveries.append(payload))
    yield deliveries
    events_module.register_bot_sink(previous[0], planner=previous[1])


def test_a_message_is_delivered_to_the_bots_after_commit(bots, handed_to_bots, django_capture_on_commit_callbacks):
    chat, (alice, echo, helper) = Chat.create("Room", "alice", ["echo", "helper"])
    with django_capture_on_commit_callbacks() as callbacks:
        message = say(chat, alice, "hi bots")
    assert handed_to_bots == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sorted((d["type"], d["participant_id"], d["bot"]) for d in handed_to_bots) == sorted(
        [("bot.message", str(echo.pk), "echo"), ("bot.message", str(helper.pk), "helper")]
    )
    assert all(d["message"]["id"] == str(message.pk) and d["message"]["text"] == "hi bots" for d in handed_to_bots)


def test_a_bot_is_not_handed_its_own_message(bots, handed_to_bots, django_capture_on_commit_callbacks):
    chat, (_alice, echo, _helper) = Chat.create("Room", "alice", ["echo", "helper"])
    with django_capture_on_commit_callbacks(execute=True):
        say(chat, echo, "from echo")
    assert [d["bot"] for d in handed_to_bots] == ["helper"]


def test_deliver_message_and_status_to_bot(bots, handed_to_bots):
    chat, (alice, echo) = Chat.create("Room", "alice", ["echo"])
    message = say(chat, alice, "direct")
    chat.deliver_message_to_bot(message, echo, extra={"hop": 2})
    chat.deliver_status_to_bot({"event": "typing", "active": True}, echo)
    first, second = handed_to_bots
    assert first == {
        "type": "bot.message",
        "conversation_id": str(chat.conversation.pk),
        "participant_id": str(echo.pk),
        "bot": "echo",
        "message": protocol.message_to_dict(message),
        "hop": 2,
    }
    assert (second["type"], second["status"], second["participant_id"]) == (
        "bot.status",
        {"event": "typing", "active": True},
        str(echo.pk),
    )


def test_status_events_reach_the_other_bots(bots, handed_to_bots, django_capture_on_commit_callbacks):
    chat, (_alice, _echo, _helper) = Chat.create("Room", "alice", ["echo", "helper"])
    with django_capture_on_commit_callbacks(execute=True):
        bob = chat.join("bob")
    with django_capture_on_commit_callbacks(execute=True):
        chat.leave(bob)
    statuses = [(d["status"]["event"], d["bot"]) for d in handed_to_bots if d["type"] == "bot.status"]
    assert sorted(statuses[:2]) == [("joined", "echo"), ("joined", "helper")]
    assert sorted(statuses[2:]) == [("left", "echo"), ("left", "helper")]
    assert all(d["status"]["participant"]["name"] == "bob" for d in handed_to_bots if d["type"] == "bot.status")


def test_redirect_message_to_chosen_bots(bots, handed_to_bots, django_capture_on_commit_callbacks):
    chat, (alice, _echo, helper) = Chat.create("Room", "alice", ["echo", "helper"])
    message = say(chat, alice, "for the helper")
    with django_capture_on_commit_callbacks(execute=True):
        chosen = chat._redirect_message(message, ["helper"], {"text": "rewritten"})
    assert chosen == [helper]
    (delivery,) = handed_to_bots
    assert delivery["participant_id"] == str(helper.pk) and delivery["redirected"] is True
    assert delivery["message"]["text"] == "rewritten" and delivery["message"]["id"] == str(message.pk)
    assert Message.objects.get(pk=message.pk).text == "for the helper"  # nothing stored


def test_redirect_message_refusals(bots):
    chat, (alice, _echo) = Chat.create("Room", "alice", ["echo"])
    other, (stranger, _) = Chat.create("Other", "stranger", ["echo"])
    message = say(chat, alice, "x")
    with pytest.raises(InvalidInput) as info:
        chat._redirect_message(say(other, stranger, "y"), ["echo"])
    assert info.value.code == "wrong_conversation"
    with pytest.raises(UnknownBot):
        chat._redirect_message(message, ["helper"])  # installed, but not in this conversation
    with pytest.raises(InvalidInput) as info:
        chat._redirect_message(message, [])
    assert info.value.code == "no_targets"
