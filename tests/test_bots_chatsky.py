"""The Chatsky adapter (bots/sdk/chatsky.py): real Chatsky pipelines in real rooms, run by the
in-process worker. Chatsky's own toy script and happy path, its turn state across a worker
restart, and every mapped attachment both ways (files, location, contact, poll, buttons and
CallbackQuery)."""

from __future__ import annotations

import pytest
from chatsky import GLOBAL, RESPONSE, TRANSITIONS, BaseResponse, Pipeline
from chatsky import Transition as Tr
from chatsky.conditions import ExactMatch
from chatsky.core.message import (
    CallbackQuery,
    Contact,
    DataAttachment,
    Document,
    Image,
    Location,
    Message,
    Poll,
    PollOption,
)
from chatsky.utils.testing import HAPPY_PATH, TOY_SCRIPT, TOY_SCRIPT_KWARGS
from django.core.files.uploadedfile import SimpleUploadedFile

from bots.builtin import samples
from bots.models import BotContext, BotDelivery
from bots.sdk.chatsky import ChatskyBot, buttons
from bots.testing import check_happy_path, running_worker
from bots.worker import db
from conversations.chat import Chat
from conversations.models import Message as ChatMessage
from conversations.uploads import store_upload

pytestmark = pytest.mark.django_db(transaction=True)

#: The toy script as CHAT_INSTALLED_BOTS would name it: JSON only (dotted path, labels as lists).
TOY_KWARGS = {
    "script": "chatsky.utils.testing.toy_script.TOY_SCRIPT",
    "start_label": list(TOY_SCRIPT_KWARGS["start_label"]),
    "fallback_label": list(TOY_SCRIPT_KWARGS["fallback_label"]),
}


def make_toy_pipeline() -> Pipeline:
    """A pipeline factory, as a spec's ``"pipeline": "tests.test_bots_chatsky.make_toy_pipeline"``."""
    return Pipeline(**TOY_SCRIPT_KWARGS)


def test_toy_script_happy_path_from_a_json_spec():
    """Chatsky's HAPPY_PATH, each request sent by a person of a real room, each answer compared."""
    check_happy_path(ChatskyBot, list(HAPPY_PATH), kwargs=TOY_KWARGS, trigger="all")


def test_toy_script_happy_path_from_a_pipeline_factory():
    check_happy_path(ChatskyBot, list(HAPPY_PATH), kwargs={"pipeline": "tests.test_bots_chatsky.make_toy_pipeline"})


def test_a_ready_pipeline_object_and_the_fallback():
    bot = ChatskyBot(
        pipeline=Pipeline(script=TOY_SCRIPT, **{k: v for k, v in TOY_SCRIPT_KWARGS.items() if k != "script"})
    )
    check_happy_path(bot, [("Hi", "Hi, how are you?"), ("something else", "Ooops"), ("Hi", "Hi, how are you?")])


# ---- a room of our own --------------------------------------------------------------------------


async def _turn(worker, chat, human, me, data: dict, n=[0]) -> list[ChatMessage]:  # noqa: B006 - a counter
    n[0] += 1
    if "option" in data:
        offer = await db(lambda: ChatMessage.objects.filter(sender=me, kind="options").order_by("-seq").first())
        sent = await db(chat.choose_option, human, str(offer.pk), data["option"], f"c{n[0]}")
    else:
        sent = await db(chat.save_message, human, {"client_id": f"c{n[0]}", **data})

    def finished() -> bool:
        return BotDelivery.objects.filter(participant=me, message_id=sent.pk, status__in=["done", "failed"]).exists()

    await worker.wait_until(finished)
    item = await db(lambda: BotDelivery.objects.get(participant=me, message_id=sent.pk))
    assert item.status == "done", item.last_error
    return await db(
        lambda: list(
            ChatMessage.objects.filter(sender=me, client_id__startswith=f"bot-{item.id}-")
            .prefetch_related("attachments")
            .order_by("seq")
        )
    )


async def test_turn_state_survives_a_worker_restart(local_bots):
    """Chatsky's context lives in our Context.misc: a new worker (new bot object, new pipeline,
    empty Chatsky memory) continues the script where the old one stopped."""
    local_bots("toy", ChatskyBot, kwargs=TOY_KWARGS, trigger="all")
    chat, people = await db(Chat.create, "Room", "alice", ["toy"])
    human, me = people[0], people[1]
    (first, _), (second, _), *rest = HAPPY_PATH
    async with running_worker() as worker:
        assert [m.text for m in await _turn(worker, chat, human, me, {"text": first})] == ["Hi, how are you?"]
        await _turn(worker, chat, human, me, {"text": second})
        old = worker.instance_for(str(me.pk))
    async with running_worker() as worker:
        for request, expected in rest:
            assert [m.text for m in await _turn(worker, chat, human, me, {"text": request})] == [expected]
        assert worker.instance_for(str(me.pk)) is not old
    stored = await db(BotContext.objects.get, participant=me)
    snapshot = stored.misc["chatsky"][str(me.pk)]
    assert snapshot["main"]["current_turn_id"] == len(HAPPY_PATH)
    assert len(snapshot["labels"]) <= 10
    assert stored.labels["0"] == "greeting_flow:start_node"
    assert stored.labels[str(len(HAPPY_PATH))] == "greeting_flow:node1"


async def test_each_sender_walks_the_script_alone(local_bots):
    local_bots("toy", ChatskyBot, kwargs={**TOY_KWARGS, "per_sender": True}, trigger="all")
    chat, people = await db(Chat.create, "Room", "alice", ["toy"])
    alice, me = people[0], people[1]
    bob = await db(chat.join, "bob")
    async with running_worker() as worker:
        assert [m.text for m in await _turn(worker, chat, alice, me, {"text": "Hi"})] == ["Hi, how are you?"]
        # Bob has not said "Hi": for him this is the start node, and a miss is the fallback.
        assert [m.text for m in await _turn(worker, chat, bob, me, {"text": "i'm fine, how are you?"})] == ["Ooops"]
        got = await _turn(worker, chat, alice, me, {"text": "i'm fine, how are you?"})
        assert [m.text for m in got] == ["Good. What do you want to talk about?"]


# ---- attachments both ways ------------------------------------------------------------------------


class Describe(BaseResponse):
    """Says what the request carried, as Chatsky sees it."""

    async def call(self, ctx) -> Message:
        request = ctx.last_request
        parts = [f"text={request.text}"]
        for item in request.attachments or []:
            if isinstance(item, Location):
                parts.append(f"location={item.latitude},{item.longitude}")
            elif isinstance(item, CallbackQuery):
                parts.append(f"callback={item.query_string}")
            elif isinstance(item, DataAttachment):
                size = len(item.source.read_bytes())
                parts.append(f"{item.chatsky_attachment_type}={item.model_extra['filename']}:{size}")
        who = (ctx.misc.get("chatroom") or {}).get("sender", {}).get("name")
        return Message(" ".join([*parts, f"from={who}"]))


def media_pipeline(tmp_path) -> Pipeline:
    png, pdf = tmp_path / "dot.png", tmp_path / "doc.pdf"
    png.write_bytes(samples.png())
    pdf.write_bytes(samples.pdf())
    script = {
        GLOBAL: {
            TRANSITIONS: [
                Tr(dst=("main", "show"), cnd=ExactMatch("show")),
                Tr(dst=("main", "menu"), cnd=ExactMatch("menu")),
                Tr(dst=("main", "echo"), priority=0.5),
            ]
        },
        "main": {
            "start": {},
            "show": {
                RESPONSE: Message(
                    "Here is everything",
                    attachments=[
                        Location(latitude=48.8584, longitude=2.2945),
                        Contact(phone_number="+33 1 23", first_name="Ada", last_name="Lovelace"),
                        Poll(question="Tea?", options=[PollOption(text="yes"), PollOption(text="no")]),
                        Image(source=png),
                        Document(source=pdf, filename="report.pdf"),
                    ],
                )
            },
            "menu": {RESPONSE: buttons("Pick one", [("Apple", "a"), ("Bee", "b")])},
            "echo": {RESPONSE: Describe()},
        },
    }
    return Pipeline(script=script, start_label=("main", "start"))


async def test_attachments_buttons_and_callbacks_both_ways(local_bots, tmp_path):
    local_bots("media", ChatskyBot(pipeline=media_pipeline(tmp_path)), trigger="all")
    chat, people = await db(Chat.create, "Room", "alice", ["media"])
    human, me = people[0], people[1]
    async with running_worker() as worker:
        shown = await _turn(worker, chat, human, me, {"text": "show"})
        assert [m.kind for m in shown] == ["text", "location", "contact", "poll", "image", "file"]
        assert shown[0].text == "Here is everything"
        assert shown[1].data == {"latitude": 48.8584, "longitude": 2.2945}
        assert shown[2].data == {"name": "Ada Lovelace", "phone": "+33 1 23"}
        assert shown[3].data["question"] == "Tea?" and [o["label"] for o in shown[3].data["options"]] == ["yes", "no"]
        image, document = shown[4].attachments.all()[0], shown[5].attachments.all()[0]  # prefetched
        assert (image.kind, image.name, image.size) == ("image", "dot.png", len(samples.png()))
        assert (document.name, document.mime) == ("report.pdf", "application/pdf")

        menu = await _turn(worker, chat, human, me, {"text": "menu"})
        assert [(m.kind, m.text) for m in menu] == [("options", "Pick one")]
        assert menu[0].data["options"] == [{"label": "Apple", "value": "a"}, {"label": "Bee", "value": "b"}]

        chosen = await _turn(worker, chat, human, me, {"option": "b"})
        assert [m.text for m in chosen] == ["text=Bee callback=b from=alice"]

        where = await _turn(worker, chat, human, me, {"kind": "location", "data": {"latitude": 1.5, "longitude": -2.0}})
        assert [m.text for m in where] == ["text=None location=1.5,-2.0 from=alice"]

        upload = await db(store_upload, chat, human, SimpleUploadedFile("photo.png", samples.png()))
        sent = await _turn(worker, chat, human, me, {"text": "look", "attachments": [str(upload.pk)]})
        assert [m.text for m in sent] == [f"text=look image=photo.png:{len(samples.png())} from=alice"]
