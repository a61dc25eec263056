"""The echo bot: repeats what it is told. The default installed bot, and the ten-line example."""

from __future__ import annotations

from bots.base import Bot


class EchoBot(Bot):
    pure = True  # its reply is all it does: it may run ahead of its claim (bots/ahead.py)

    def on_message(self, message, context):
        if message.text.strip():
            return message.text
        return f"(a {message.kind} from {message.sender_name})"
