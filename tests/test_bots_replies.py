"""Every reply kind, stored through a real room with the right Message.kind, data and files;
the option round trip; malformed replies refused; the test kit itself."""

from __future__ import annotations

import base64

import pytest

from bots import replies
from bots.base import Bot
from bots.builtin import samples
from bots.builtin.demo import SHOWCASE
from bots.models import BotDelivery
from bots.replies import ReplyError
from bots.testing import Choose, acheck_happy_path, check_happy_path
from bots.worker import db

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def demo_installed(settings):
    settings.CHAT_INSTALLED_BOTS = {
        **settings.CHAT_INSTALLED_BOTS,
        "demo": {"class": "bots.builtin.demo.DemoBot", "description": "Shows every reply kind."},
    }


EXPECTED_DATA = {
    "text": {},
    "markdown": {},
    "table": {"columns": ["city", "people"], "rows": [["Paris", 2102650], ["Lyon", 522250]]},
    "location": {"latitude": 48.8584, "longitude": 2.2945, "label": "Eiffel Tower"},
    "contact": {"name": "Ada Lovelace", "phone": "+44 20 0000 0000", "email": "ada@example.com"},
    "poll": {
        "question": "Tea or coffee?",
        "options": [{"label": "tea", "value": "tea"}, {"label": "coffee", "value": "coffee"}],
        "multiple": False,
    },
}
ATTACHMENT_MIME = {
    "file": ("application/pdf", "file"),
    "image": ("image/png", "image"),
    "audio": ("audio/x-wav", "audio"),
    "video": ("video/mp4", "video"),
    "voice": ("audio/ogg", "voice"),
}


async def test_the_demo_bot_shows_every_reply_kind():
    [menu_turn, everything] = await acheck_happy_path(
        "demo", [("menu", {"kind": "options"}), ("all", lambda got: len(got) == len(SHOWCASE))]
    )
    assert [o["value"] for o in menu_turn[0].data["options"]] == [*SHOWCASE, "all"]
    by_kind = {m.kind: m for m in everything}
    assert list(by_kind) == list(SHOWCASE)  # each kind once, in order
    for kind, data in EXPECTED_DATA.items():
        assert by_kind[kind].data == data, kind
    assert by_kind["chart"].data["figure"]["data"][0]["type"] == "bar"
    for kind, (mime, attachment_kind) in ATTACHMENT_MIME.items():
        attachments = await db(lambda m=by_kind[kind]: list(m.attachments.all()))
        assert [(a.mime, a.kind) for a in attachments] == [(mime, attachment_kind)], kind


async def test_choosing_an_option_comes_back_to_the_bot_that_offered_it():
    [offer, _chosen, _again] = await acheck_happy_path(
        "demo",
        [
            ("menu", {"kind": "options"}),
            (Choose("table"), [{"kind": "table"}, {"kind": "options"}]),
            (Choose("location"), [{"kind": "location", "text": "Eiffel Tower"}, {"kind": "options"}]),
        ],
    )
    choice = await db(
        lambda: BotDelivery.objects.filter(message__quoted_message=offer[0]).select_related("message").get().message
    )
    assert choice.data == {"option": {"message_id": str(offer[0].pk), "value": "table"}}
    assert choice.quoted_message_id == offer[0].pk


class FrameLike:
    """Shaped like a pandas DataFrame as far as ``replies.table`` cares (pandas not needed)."""

    columns = ["a", "b"]

    def to_dict(self, orient):
        assert orient == "split"
        return {"index": [0, 1], "columns": ["a", "b"], "data": [[1, 2.5], [3, float("nan")]]}


class FigureLike:
    def to_plotly_json(self):
        return {"data": [{"type": "scatter", "x": (1, 2), "y": [3, 4]}], "layout": {}}


PNG_BASE64 = base64.b64encode(samples.png()).decode()


class Builders(Bot):
    def on_message(self, message, context):
        return {
            "frame": replies.table(FrameLike()),
            "rows": replies.table([[1, "x"]], columns=["n", "s"], caption="rows"),
            "figure": replies.chart(FigureLike()),
            "dict": {"kind": "markdown", "text": "*hi*"},
            "b64": {"kind": "image", "file": {"name": "p.png", "content_base64": PNG_BASE64}},
            "quote": replies.text("quoting you", quote=message.id),
        }[message.text]


def test_builders_accept_frames_figures_and_reply_dicts():
    *_, b64, quote = check_happy_path(
        Builders,
        [
            ("frame", {"kind": "table", "data": {"columns": ["a", "b"], "rows": [[1, 2.5], [3, None]]}}),
            ("rows", {"kind": "table", "text": "rows", "data": {"columns": ["n", "s"], "rows": [[1, "x"]]}}),
            (
                "figure",
                {
                    "kind": "chart",
                    "data": {
                        "figure": FigureLike().to_plotly_json()
                        | {"data": [{"type": "scatter", "x": [1, 2], "y": [3, 4]}]}
                    },
                },
            ),
            ("dict", {"kind": "markdown", "text": "*hi*"}),
            ("b64", {"kind": "image"}),
            ("quote", "quoting you"),
        ],
        trigger="all",
    )
    assert quote[0].quoted_message_id is not None
    assert [a.mime for a in b64[0].attachments.all()] == ["image/png"]


class WrongBytes(Bot):
    def on_message(self, message, context):
        return replies.image(samples.pdf(), "not-an-image.png")


async def test_a_file_that_is_not_what_the_reply_says_is_refused():
    with pytest.raises(AssertionError, match="an image reply needs image content"):
        await acheck_happy_path(WrongBytes, [("picture please", None)], trigger="all")


@pytest.mark.parametrize(
    "reply, reason",
    [
        (replies.Reply("sticker", "x"), "unknown reply kind"),
        (replies.text("  "), "empty text"),
        (replies.Reply("options", "pick", {"options": []}), "options needs"),
        (replies.options("pick", [("a", 1), ("b", 1)]), "must differ"),
        (replies.location(91, 0), "latitude is -90..90"),
        (replies.Reply("location", "", {"latitude": "1", "longitude": 2}), "numeric"),
        (replies.contact("Ada"), "phone, email or url"),
        (replies.poll("Only one?", ["yes"]), "poll needs 2"),
        (replies.Reply("table", "", {"columns": ["a"], "rows": [[1, 2]]}), "one cell per column"),
        (replies.Reply("chart", "", {"figure": {"layout": {}}}), "Plotly figure"),
        (replies.Reply("image", "no file"), "needs a file"),
        (replies.Reply("text", "x", {"extra": 1}), "has no data"),
    ],
)
def test_malformed_replies_are_refused_with_a_reason(reply, reason):
    with pytest.raises(ReplyError, match=reason):
        replies.coerce(reply)


def test_what_a_bot_may_return():
    assert replies.coerce(None) == []
    assert [r.to_dict() for r in replies.coerce(["a", replies.markdown("*b*")])] == [
        {"kind": "text", "text": "a", "data": {}},
        {"kind": "markdown", "text": "*b*", "data": {}},
    ]
    with pytest.raises(ReplyError, match="a bot returned int"):
        replies.coerce(42)
    with pytest.raises(ReplyError, match="a bot returned list"):
        replies.coerce([["nested"]])
    with pytest.raises(ReplyError, match="content_base64"):
        replies.coerce({"kind": "file", "file": {"name": "x", "path": "/etc/passwd"}})


def test_echo_happy_path():
    check_happy_path("echo", [("hello", "hello"), ("again", "again")])
