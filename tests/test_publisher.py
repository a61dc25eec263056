"""chatroom/publisher.py against real Redis servers: publishes written without waiting arrive
in order, a password is sent first, a lost connection is replaced, and while there is none
the caller is told to send another way."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import uuid

import pytest
from redis import asyncio as aioredis

from chatroom.publisher import NAME, Publisher

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
WAIT = 10  # seconds: an upper bound on waiting for an event, never reached when all is well


class Observed(Publisher):
    """A publisher whose connection's end and replies can be awaited."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.lost = asyncio.Event()
        self.answered = asyncio.Event()  # set whenever nothing is left unanswered

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.unanswered == 0:
            self.answered.set()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.set()


async def connected(publisher: Publisher) -> None:
    """Start the connection as a first publish would, and wait for it."""
    assert not publisher.publish("nobody", b"before connecting")
    async with asyncio.timeout(WAIT):
        await publisher._connecting
    assert publisher.transport is not None


async def subscriber(url: str, channel: str):
    client = aioredis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    async with asyncio.timeout(WAIT):
        while (await pubsub.get_message(timeout=WAIT))["type"] != "subscribe":
            pass
    return client, pubsub


async def received(pubsub, count: int) -> list[bytes]:
    out = []
    async with asyncio.timeout(WAIT):
        while len(out) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT)
            if message is not None:
                out.append(message["data"])
    return out


async def test_publishes_written_without_waiting_arrive_in_order():
    channel = f"test-publisher-{uuid.uuid4().hex}"
    client, pubsub = await subscriber(REDIS_URL, channel)
    publisher = Publisher(REDIS_URL)
    try:
        await connected(publisher)
        for i in range(500):  # in one go: nothing is awaited in between
            assert publisher.publish(channel, b"%d" % i)
        assert await received(pubsub, 500) == [b"%d" % i for i in range(500)]
    finally:
        publisher.close()
        await client.aclose()


async def test_a_lost_connection_is_replaced_and_the_caller_told_meanwhile(caplog):
    channel = f"test-publisher-{uuid.uuid4().hex}"
    client, pubsub = await subscriber(REDIS_URL, channel)
    publisher = Observed(REDIS_URL)
    try:
        await connected(publisher)
        assert publisher.publish(channel, b"first")
        assert await received(pubsub, 1) == [b"first"]
        host, port = publisher.transport.get_extra_info("sockname")[:2]
        [mine] = [c for c in await client.client_list() if c["addr"] == f"{host}:{port}"]
        assert mine["name"] == NAME
        await client.client_kill_filter(_id=mine["id"])
        async with asyncio.timeout(WAIT):
            await publisher.lost.wait()
        await connected(publisher)  # False while down; a new connection in the background
        assert publisher.publish(channel, b"after")
        assert await received(pubsub, 1) == [b"after"]
    finally:
        publisher.close()
        await client.aclose()


def test_only_plain_addresses_get_a_publisher():
    assert Publisher.for_host({"address": "redis://127.0.0.1:6379/1"}) is not None
    assert Publisher.for_host({"address": "rediss://cache.example:6380"}) is not None
    assert Publisher.for_host({"master_name": "main", "sentinels": [("127.0.0.1", 26379)]}) is None


async def test_an_unreachable_redis_leaves_publishing_to_the_caller(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here
    publisher = Publisher(f"redis://127.0.0.1:{port}/0")
    with caplog.at_level(logging.WARNING, logger="chatroom.publisher"):
        assert not publisher.publish("c", b"x")
        async with asyncio.timeout(WAIT):
            await publisher._connecting
    assert not publisher.publish("c", b"x") and publisher.transport is None
    assert "cannot connect to Redis" in caplog.text
    publisher.close()


@pytest.fixture
def redis_with_password(tmp_path):
    """A Redis server of our own that asks for a password."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret", "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            break
    yield f"redis://:s3cret@127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(WAIT)


async def test_a_password_goes_first_and_a_wrong_one_is_logged(redis_with_password, caplog):
    channel = "with-password"
    client, pubsub = await subscriber(redis_with_password, channel)
    publisher = Publisher(redis_with_password)
    wrong = Observed(redis_with_password.replace("s3cret", "wrong"))
    try:
        await connected(publisher)
        assert publisher.publish(channel, b"let in")
        assert await received(pubsub, 1) == [b"let in"]
        with caplog.at_level(logging.ERROR, logger="chatroom.publisher"):
            await connected(wrong)
            wrong.answered.clear()
            assert wrong.publish(channel, b"kept out")
            async with asyncio.timeout(WAIT):
                await wrong.answered.wait()  # AUTH, SETNAME and the publish: all refused
        assert "Redis refused a command" in caplog.text
        assert publisher.publish(channel, b"still in")
        assert await received(pubsub, 1) == [b"still in"]  # not "kept out"
    finally:
        publisher.close()
        wrong.close()
        await client.aclose()
