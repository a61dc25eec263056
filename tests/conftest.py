"""Shared fixtures. Tests run against whatever DATABASE_URL / REDIS_URL say (the embedded
default when unset); .ci/run runs the suite on both."""

from __future__ import annotations

import os

# Isolate this run's channel-layer keys in a shared Redis (read by settings at import).
os.environ.setdefault("CHANNEL_PREFIX", f"chatroom-test-{os.getpid()}")

import pytest


@pytest.fixture(scope="session", autouse=True)
def _no_persistent_connections_in_this_process():
    """PostgreSQL keeps connections while healthy by default (``DB_CONN_MAX_AGE``). In the test
    process the threads of ``database_sync_to_async`` and of the bot workers would then hold
    theirs to the end, and dropping the test database fails ("being accessed by other users").
    The live daphne processes keep the default; they are stopped before the drop."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0  # the dict every connection reads


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


@pytest.fixture(scope="session")
def daphne(django_db_setup, django_db_blocker):
    """One live daphne for the session, on the test database (tests must use transaction=True)."""
    from tests.live import DaphneServer

    server = DaphneServer().start()
    yield server
    server.stop()


@pytest.fixture
def start_daphne(django_db_setup):
    """Start extra daphne processes (own env, e.g. limits or REDIS_URL); stopped after the test."""
    from tests.live import DaphneServer

    servers = []

    def start(env: dict[str, str] | None = None, port: int | None = None) -> DaphneServer:
        server = DaphneServer(env, port).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """A channel layer object per test. channels-redis binds its receive lock to the event loop
    that first used it, and pytest-asyncio gives every test a loop of its own."""
    from channels.layers import channel_layers

    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture
def local_bots():
    """Install bots for one test, in this process only: ``local_bots(name, Bot, **spec)``."""
    from bots import registry

    names = []

    def install(name, bot, **spec):
        registry.register_local(name, bot, **spec)
        names.append(name)

    yield install
    for name in names:
        registry.unregister_local(name)


class LoopStatements:
    """The statements run on the event loop's own connection (``chatroom/postgresql/loop.py``):
    ``count``; ``broken = True`` fails each as a dropped connection does (None, nothing
    committed)."""

    def __init__(self) -> None:
        self.count = 0
        self.broken = False


@pytest.fixture
def loop_statements(monkeypatch) -> LoopStatements:
    from chatroom.postgresql import loop as on_loop

    real, seen = on_loop.fetchone, LoopStatements()

    async def counted(sql, params, alias="default"):
        seen.count += 1
        return None if seen.broken else await real(sql, params, alias)

    monkeypatch.setattr(on_loop, "fetchone", counted)
    return seen
