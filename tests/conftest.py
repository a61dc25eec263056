"""Shared fixtures. Tests run against whatever DATABASE_URL / REDIS_URL say (the embedded
default when unset); .ci/run runs the suite on both."""

from __future__ import annotations

import os

# Isolate this run's channel-layer keys in a shared Redis (read by settings at import).
os.environ.setdefault("CHANNEL_PREFIX", f"chatroom-test-{os.getpid()}")

import pytest


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Uploads of a test go to its own folder, never into var/ or the repository."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def make_chat(db):
    """Create a conversation through the one door: ``make_chat(bots=[...]) -> (chat, owner)``."""
    from conversations.chat import Chat

    def make(name: str = "Room", nickname: str = "alice", bots=()):
        chat, participants = Chat.create(name, nickname, bots)
        return chat, participants[0]

    return make
