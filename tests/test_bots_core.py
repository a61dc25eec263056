"""The registry (settings + admin), the Context, the sink's choices, and what staff see."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from bots import registry
from bots.base import Bot, mentions
from bots.context import Context
from bots.delivery import import_context, load_context
from bots.models import Bot as BotRow
from bots.models import BotContext, BotDelivery
from conversations.chat import Chat


@pytest.mark.django_db
def test_admin_bots_join_settings_bots_and_settings_win(client, settings):
    settings.CHAT_INSTALLED_BOTS = {"echo": {"class": "bots.builtin.echo.EchoBot", "description": "from settings"}}
    BotRow.objects.create(name="shout", class_path="bots.builtin.echo.EchoBot", trigger="mention", description="db")
    BotRow.objects.create(name="echo", class_path="bots.builtin.demo.DemoBot", description="shadowed")
    BotRow.objects.create(name="off", class_path="bots.builtin.echo.EchoBot", enabled=False)
    body = client.get("/api/bots").json()
    assert {b["name"]: (b["description"], b["trigger"]) for b in body["bots"]} == {
        "echo": ("from settings", "auto"),
        "shout": ("db", "mention"),
    }
    assert registry.get_spec("shout").source == "admin"
    assert registry.get_spec("off") is None
    assert type(registry.build(registry.get_spec("echo"))).__name__ == "EchoBot"


@pytest.mark.parametrize(
    "spec, error",
    [
        ({"class": "x.Y", "trigger": "sometimes"}, "trigger must be one of"),
        ({"class": "x.Y", "kind": "carrier-pigeon"}, "kind must be one of"),
        ({"description": "no class"}, "needs 'class'"),
        ({"class": "x.Y", "args": {"a": 1}}, "args is a list"),
    ],
)
def test_bad_specs_are_refused_with_the_bot_name(spec, error):
    with pytest.raises(ValueError, match=f"bot 'b'.*{error}"):
        registry.spec_from_dict("b", spec)


def test_mentions_match_whole_names_only():
    assert mentions("hi @echo!", "echo") and mentions("@ECHO", "echo")
    assert not mentions("hi @echoes", "echo") and not mentions("mail me@echo", "echo")
    assert not mentions("@echo-2 there", "echo")


def test_context_turns_and_json_round_trip():
    context = Context.start("greeting")
    assert (context.current_turn_id, context.labels, context.last_request) == (0, {0: "greeting"}, None)
    context.add_request({"text": "hi", "sender": {"name": "ann"}})
    context.add_response([{"kind": "text", "text": "hello"}])
    context.add_label("small-talk")
    context.misc["mood"] = "good"
    again = Context.from_json(context.to_json())
    assert again.current_turn_id == 1
    assert again.last_request == {"text": "hi", "sender": {"name": "ann"}}
    assert again.last_response == [{"kind": "text", "text": "hello"}]
    assert again.labels == {0: "greeting", 1: "small-talk"} and again.last_label == "small-talk"
    assert again.misc == {"mood": "good"}


def test_a_context_keeps_a_bounded_history(monkeypatch):
    monkeypatch.setattr("bots.context.MAX_TURNS", 3)
    context = Context.start()
    for n in range(1, 6):
        context.add_request({"text": str(n)})
        context.add_label(f"l{n}")
    assert sorted(context.requests) == [3, 4, 5]
    assert sorted(context.labels) == [0, 3, 4, 5]  # turn 0 (the start) stays


def _lz4_supported(connection) -> bool:
    """Whether this PostgreSQL server can compress with lz4 (14+, built with it)."""
    from django.db import DatabaseError, transaction

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL default_toast_compression = 'lz4'")
    except DatabaseError:
        return False
    return True


@pytest.mark.django_db
def test_a_full_context_round_trips_and_is_stored_by_lz4_on_postgresql(make_chat):
    """A Context at its bound (200 turns, rewritten at every turn) is stored and read back
    whole; PostgreSQL compresses its columns with lz4 where the server has it (bots'
    migration 0003: ~1.3 ms less per turn than pglz)."""
    from django.db import connection

    from bots.context import MAX_TURNS
    from bots.delivery import save_context

    chat, _ = make_chat(bots=["echo"])
    bot = chat.conversation.participants.get(kind="bot")
    context = load_context(bot)
    for n in range(MAX_TURNS + 5):
        context.add_request({"text": f"message {n} " * 20, "sender": {"name": "ann", "id": str(n)}})
        context.add_response([{"kind": "text", "text": f"reply {n} " * 10}])
    save_context(context)
    loaded = load_context(bot)
    assert loaded.to_dict()["requests"] == context.to_dict()["requests"]
    assert loaded.responses == context.responses and len(loaded.requests) == MAX_TURNS
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(requests), pg_column_compression(responses) FROM bots_botcontext"
            " WHERE participant_id = %s",
            [bot.pk],
        )
        methods = cursor.fetchone()
    assert methods == (("lz4", "lz4") if _lz4_supported(connection) else ("pglz", "pglz"))


@pytest.mark.django_db
def test_a_context_can_be_exported_and_imported(make_chat):
    chat, _ = make_chat(bots=["echo"])
    bot = chat.conversation.participants.get(kind="bot")
    exported = json.dumps(
        {
            "current_turn_id": 2,
            "requests": {"1": {"text": "a"}, "2": {"text": "b"}},
            "responses": {},
            "labels": {"0": "start"},
            "misc": {"k": 1},
        }
    )
    import_context(bot, exported)
    loaded = load_context(bot)
    assert (loaded.current_turn_id, loaded.requests[2], loaded.misc) == (2, {"text": "b"}, {"k": 1})
    assert BotContext.objects.get(participant=bot).requests == {"1": {"text": "a"}, "2": {"text": "b"}}


class Watcher(Bot):
    wants_typing = True

    def on_status(self, status, context):
        return None


@pytest.mark.django_db(transaction=True)
def test_statuses_reach_only_bots_that_listen_for_them():
    registry.register_local("watcher", Watcher, trigger="all")
    try:
        chat, people = Chat.create("Room", "alice", ["echo", "watcher"])
        chat.join("bob")
        chat.set_typing(people[0], True)
        chat.end()
        watcher = people[2]
        rows = BotDelivery.objects.filter(participant=watcher).order_by("id")
        events = [(d.payload["status"]["event"], (d.payload["status"]["participant"] or {}).get("name")) for d in rows]
        assert events == [
            ("joined", "alice"),
            ("joined", "echo"),
            ("joined", "bob"),
            ("typing", "alice"),
            ("ended", None),
        ]
        assert not BotDelivery.objects.filter(participant=people[1], type="status").exists()  # echo has no on_status
    finally:
        registry.unregister_local("watcher")


@pytest.mark.django_db
def test_staff_see_failed_deliveries_with_their_reason(client, make_chat):
    chat, _ = make_chat(bots=["echo"])
    bot = chat.conversation.participants.get(kind="bot")
    failed = BotDelivery.objects.create(
        participant=bot,
        conversation=chat.conversation,
        bot_name="echo",
        type="message",
        status="failed",
        last_error="Traceback ...\nZeroDivisionError: division by zero",
    )
    BotContext.objects.create(participant=bot, current_turn_id=1, requests={"1": {"text": "hi"}})
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    listing = client.get("/admin/bots/botdelivery/?status__exact=failed")
    assert listing.status_code == 200
    assert "ZeroDivisionError: division by zero" in listing.content.decode()
    assert client.get(f"/admin/bots/botdelivery/{failed.pk}/change/").status_code == 200
    assert "&quot;text&quot;: &quot;hi&quot;" in client.get(f"/admin/bots/botcontext/{bot.pk}/change/").content.decode()
    assert client.get("/admin/bots/bot/add/").status_code == 200
    response = client.post(
        "/admin/bots/botdelivery/", {"action": "retry", "_selected_action": [failed.pk]}, follow=True
    )
    assert response.status_code == 200
    failed.refresh_from_db()
    assert failed.status == "pending"


@pytest.mark.django_db
def test_a_bad_bot_spec_is_reported_and_leaves_the_others_working(settings):
    """A misconfigured bot fails `manage.py check`, and the API still lists the good ones."""
    from django.core.checks import run_checks
    from django.test import Client

    settings.CHAT_INSTALLED_BOTS = {
        "echo": {"class": "bots.builtin.echo.EchoBot", "trigger": "all"},
        "broken": {"kind": "webhook", "trigger": "all"},  # a webhook bot without its url
    }
    errors = [e for e in run_checks() if e.id == "bots.E001"]
    assert [(e.obj, "url" in e.msg) for e in errors] == [("broken", True)]
    r = Client().get("/api/bots")
    assert r.status_code == 200
    assert [b["name"] for b in r.json()["bots"]] == ["echo"]


@pytest.mark.django_db
def test_the_admin_shows_an_external_bots_token_once_and_rotation_revokes_the_old_one(client):
    """Only the hash is stored; the token appears in the admin's message once, and works."""
    import re

    from django.contrib.messages import get_messages

    from bots.auth import bot_from_token
    from bots.models import Bot

    def shown_token(response) -> str:
        found = [re.search(r"copy it now\): (\S+)", str(m)) for m in get_messages(response.wsgi_request)]
        tokens = [m.group(1) for m in found if m]
        assert len(tokens) == 1, "the token is shown exactly once"
        return tokens[0]

    staff = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(staff)
    form = {"name": "hook", "kind": "webhook", "url": "https://bots.example.com/hook", "trigger": "all"}
    form |= {"args": "[]", "kwargs": "{}", "enabled": "on"}
    added = client.post("/admin/bots/bot/add/", form)
    assert added.status_code == 302, added.content.decode()[:2000]
    first = shown_token(added)
    row = Bot.objects.get(name="hook")
    assert first.startswith("hook.") and first not in row.token_hash and len(row.token_hash) == 64
    assert bot_from_token(first).name == "hook"

    assert first in client.get("/admin/bots/bot/").content.decode()  # the page after the save
    assert first not in client.get("/admin/bots/bot/").content.decode()  # and never again
    rotated = client.post("/admin/bots/bot/", {"action": "rotate_token", "_selected_action": [row.pk]})
    second = shown_token(rotated)
    assert second != first
    assert bot_from_token(first) is None  # the old token stops working
    assert bot_from_token(second).name == "hook"
