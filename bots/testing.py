"""A test kit for bot authors: run a bot through a real room and check what it answers.

    from bots.testing import Choose, check_happy_path

    @pytest.mark.django_db(transaction=True)
    def test_my_bot():
        check_happy_path(MyBot, [("hi", "Hello!"), ("menu", {"kind": "options"}), (Choose("a"), None)])

Each turn sends a request as a human of a fresh conversation (through ``Chat``, as a browser
would), waits for the bot's delivery to finish (an in-process worker, no sleeping) and compares
the bot's messages with the expectation: ``None`` (no reply), a ``str`` (one text reply), a
dict (a subset of ``{"kind", "text", "data"}``), a ``Reply``, a list of those, or a callable
that gets the list of ``Message`` rows and returns True.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync

from conversations.chat import Chat
from conversations.models import Message, Participant

from . import registry
from .models import BotDelivery
from .replies import Reply
from .worker import BotWorker, db


@dataclass
class Choose:
    """A request that picks an option of the bot's latest options message."""

    value: Any


@asynccontextmanager
async def running_worker(**options: Any) -> AsyncIterator[BotWorker]:
    """A bot worker on the current event loop for the duration of the block."""
    worker = await BotWorker(**{"listen": False, **options}).start()
    try:
        yield worker
    finally:
        await worker.stop()


def _send(chat: Chat, human: Participant, bot: Participant, request: Any, turn: int) -> Message:
    client_id = f"happy-{turn}-{uuid.uuid4().hex[:8]}"
    if isinstance(request, Choose):
        offer = Message.objects.filter(sender=bot, kind=Message.Kind.OPTIONS).order_by("-created_at").first()
        if offer is None:
            raise AssertionError(f"turn {turn}: the bot has offered no options to choose from")
        return chat.choose_option(human, str(offer.pk), request.value, client_id)
    data = {"text": request} if isinstance(request, str) else dict(request)
    return chat.save_message(human, {**data, "client_id": client_id})


def _matches(expected: Any, message: Message) -> bool:
    if isinstance(expected, str):
        return message.kind == "text" and message.text == expected
    if isinstance(expected, Reply):
        expected = {"kind": expected.kind, "text": expected.text, **({"data": expected.data} if expected.data else {})}
    if isinstance(expected, dict):
        actual = {"kind": message.kind, "text": message.text, "data": message.data}
        return all(actual.get(key) == value for key, value in expected.items())
    raise TypeError(f"cannot compare with {expected!r}")


def _check(turn: int, expected: Any, got: list[Message]) -> None:
    shown = [(m.kind, m.text[:60]) for m in got]
    if callable(expected) and not isinstance(expected, (Reply, dict, str)):
        assert expected(got), f"turn {turn}: the check rejected {shown}"
        return
    wanted = [] if expected is None else list(expected) if isinstance(expected, (list, tuple)) else [expected]
    assert len(got) == len(wanted), f"turn {turn}: expected {len(wanted)} replies, got {shown}"
    for index, (want, message) in enumerate(zip(wanted, got, strict=True)):
        assert _matches(want, message), f"turn {turn}, reply {index + 1}: expected {want!r}, got {shown[index]}"


async def acheck_happy_path(
    bot: Any, turns: Sequence[tuple[Any, Any]], *, name: str | None = None, within: float = 20, **spec: Any
) -> list[list[Message]]:
    """Run ``bot`` (an installed name, a Bot subclass or an instance) through ``turns`` of
    ``(request, expected)``; return the bot's messages per turn. Needs a committed database
    (``django_db(transaction=True)``)."""
    local = not isinstance(bot, str)
    name = name or (bot if isinstance(bot, str) else f"happy-{uuid.uuid4().hex[:8]}")
    if local:
        registry.register_local(name, bot, **spec)
    try:
        chat, people = await db(Chat.create, "happy path", "tester", [name])
        human, me = people[0], next(p for p in people if p.bot_name == name)
        results = []
        async with running_worker() as worker:
            for turn, (request, expected) in enumerate(turns, start=1):
                sent = await db(_send, chat, human, me, request, turn)

                def finished(sent=sent) -> bool:
                    return BotDelivery.objects.filter(
                        participant=me, message_id=sent.pk, status__in=["done", "failed", "skipped"]
                    ).exists()

                def delivered(sent=sent) -> BotDelivery | None:
                    return BotDelivery.objects.filter(participant=me, message_id=sent.pk).first()

                if await db(delivered) is None:
                    got: list[Message] = []  # the trigger did not pick this message
                else:
                    await worker.wait_until(finished, within)
                    item = await db(delivered)
                    assert item.status == "done", f"turn {turn}: the bot failed: {item.last_error}"
                    got = await db(
                        lambda item=item: list(
                            Message.objects.filter(sender=me, client_id__startswith=f"bot-{item.id}-")
                            .prefetch_related("attachments")
                            .order_by("created_at")
                        )
                    )
                _check(turn, expected, got)
                results.append(got)
        return results
    finally:
        if local:
            registry.unregister_local(name)


def check_happy_path(bot: Any, turns: Sequence[tuple[Any, Any]], **options: Any) -> list[list[Message]]:
    """Synchronous ``acheck_happy_path`` for plain test functions."""
    return async_to_sync(acheck_happy_path)(bot, turns, **options)


Predicate = Callable[[list[Message]], bool]
