"""Create the bench's rooms in our database: ``python -m bench.seed PLAN_JSON OUT_JSON``.

Runs in a child process with our settings. Each room is made through ``Chat.create`` (its owner
and bots, as the API does); the other humans are inserted in bulk, with tokens, so that ten
thousand participants take seconds, not minutes (nobody is connected yet, so nothing is missed).
PLAN: ``[{"count": rooms, "humans": per room, "bots": ["echo"]}, ...]``;
OUT: ``[[{"id": room id, "tokens": [...]}, ...] per plan entry]``.
"""

from __future__ import annotations

import json
import os
import sys


def seed(plan: list[dict]) -> list[list[dict]]:
    """Create the rooms of ``plan``; return their ids and participant tokens."""
    from django.db import transaction

    from conversations.chat import Chat
    from conversations.models import Participant
    from conversations.tokens import new_token

    out = []
    for entry in plan:
        rooms = []
        for r in range(entry["count"]):
            chat, participants = Chat.create(f"bench {r}", "h0", entry.get("bots", []))
            tokens = [participants[0].token]
            extra = []
            for i in range(1, entry["humans"]):
                p = Participant(conversation=chat.conversation, name=f"h{i}", kind=Participant.Kind.HUMAN)
                token, p.token_hash = new_token(p.id)
                tokens.append(token)
                extra.append(p)
            with transaction.atomic():
                Participant.objects.bulk_create(extra, batch_size=1000)
            rooms.append({"id": str(chat.conversation.pk), "tokens": tokens})
        out.append(rooms)
    return out


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatroom.settings")
    import django

    django.setup()
    with open(sys.argv[2], "w") as f:
        json.dump(seed(json.loads(sys.argv[1])), f)
