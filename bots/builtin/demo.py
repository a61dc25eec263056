"""The demo bot: shows every reply kind. Say "menu", pick a button, or name a kind ("table")."""

from __future__ import annotations

import re

from bots import replies
from bots.base import Bot, BotMessage, Context

from . import samples


def _chart() -> dict:
    return {
        "data": [{"type": "bar", "x": ["Mon", "Tue", "Wed", "Thu", "Fri"], "y": [3, 7, 4, 9, 6], "name": "messages"}],
        "layout": {"title": {"text": "Messages per day"}},
    }


SHOWCASE = {
    "text": lambda: replies.text("Plain text, nothing more."),
    "markdown": lambda: replies.markdown("**Markdown**, with *emphasis*, `code` and a [link](https://example.com)."),
    "table": lambda: replies.table(
        [{"city": "Paris", "people": 2_102_650}, {"city": "Lyon", "people": 522_250}], caption="Two cities"
    ),
    "chart": lambda: replies.chart(_chart(), caption="A Plotly bar chart"),
    "location": lambda: replies.location(48.8584, 2.2945, "Eiffel Tower"),
    "contact": lambda: replies.contact("Ada Lovelace", email="ada@example.com", phone="+44 20 0000 0000"),
    "poll": lambda: replies.poll("Tea or coffee?", ["tea", "coffee"]),
    "file": lambda: replies.file(samples.pdf(), "example.pdf", "A PDF file"),
    "image": lambda: replies.image(samples.png(), "square.png", "An image"),
    "audio": lambda: replies.audio(samples.wav(), "silence.wav", "An audio clip"),
    "video": lambda: replies.video(samples.mp4(), "clip.mp4", "A video"),
    "voice": lambda: replies.voice(samples.ogg(), "note.ogg", "A voice note"),
}


def menu() -> replies.Reply:
    return replies.options("What shall I show you?", [(kind, kind) for kind in SHOWCASE] + [("everything", "all")])


class DemoBot(Bot):
    def on_message(self, message: BotMessage, context: Context):
        choice = message.option if message.option is not None else re.sub(r"@[\w-]+", "", message.text).strip().lower()
        context.misc["shown"] = context.misc.get("shown", 0) + 1
        if choice in SHOWCASE:
            context.add_label(f"show:{choice}")
            return [SHOWCASE[choice](), menu()]
        if choice == "all":
            context.add_label("show:all")
            return [make() for make in SHOWCASE.values()]
        context.add_label("menu")
        return menu()
