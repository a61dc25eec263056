"""The conversation WebSocket against real daphne processes (issue: real-time delivery).

Every guarantee of docs/protocol.md has a test here: acks and idempotent resends, order and
exactly-once delivery, resume after a disconnect, bursts, bad input, close codes, typing, read
marks, presence, live system events, and two daphne processes sharing Redis.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import pytest

from tests.live import DaphneServer, limits_env
from tests.wsclient import Room, Socket, turned

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def fast_server(django_db_setup):
    """A server whose rate limits let one client send a thousand messages at once."""
    server = DaphneServer(limits_env(RATE_LIMIT_MESSAGES=100_000, FRAME_BURST=100_000, FRAME_RATE=100_000)).start()
    yield server
    server.stop()
    assert server.tracebacks() == [], "".join(server.log[-80:])


@pytest.fixture(scope="module")
def strict_server(django_db_setup):
    """A server with small limits, to hit each of them quickly."""
    server = DaphneServer(
        limits_env(MAX_TEXT_LENGTH=100, MAX_FRAME_SIZE=2000, RATE_LIMIT_MESSAGES=5, FRAME_BURST=30, TYPING_TTL=1)
    ).start()
    yield server
    server.stop()
    assert server.tracebacks() == [], "".join(server.log[-80:])


def seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages]


async def frames_until(socket: Socket, type_: str, where) -> list[dict]:
    """Every frame the socket receives up to and including the first match."""
    frames = []
    while True:
        frame = await socket.recv()
        frames.append(frame)
        if frame["type"] == type_ and where(frame):
            return frames


# ---- sending ---------------------------------------------------------------------------------


async def test_welcome_then_ack_and_broadcast(daphne):
    room = await Room.create(daphne)
    await room.join("bob")
    alice, bob = await room.connect("alice"), await room.connect("bob")
    welcome = await alice.expect("welcome")
    assert welcome["participant"]["name"] == "alice"
    assert welcome["conversation"]["id"] == room.id
    assert welcome["last_seq"] >= 3  # created, alice joined, bob joined

    ack = await alice.send_text("hello", "c-1")
    assert ack["seq"] == welcome["last_seq"] + 1
    assert ack["approval"] == "auto"
    for socket in (alice, bob):
        message = await socket.next_message()
        assert (message["id"], message["seq"], message["text"]) == (ack["id"], ack["seq"], "hello")
        assert message["sender"]["name"] == "alice"
    await alice.close()
    await bob.close()


async def test_resending_a_client_id_returns_the_same_message(daphne):
    room = await Room.create(daphne)
    await room.join("bob")
    alice, bob = await room.connect("alice"), await room.connect("bob")
    first = await alice.send_text("once", "same-id")
    again = await alice.send_text("once", "same-id")
    assert (again["id"], again["seq"]) == (first["id"], first["seq"])

    after = await alice.send_text("next", "other-id")
    received = await bob.messages(2)
    assert seqs(received) == [first["seq"], after["seq"]]
    assert after["seq"] == first["seq"] + 1
    history = await room.history("bob", after_seq=first["seq"] - 1)
    assert [m["text"] for m in history["messages"]] == ["once", "next"]
    await alice.close()
    await bob.close()


async def test_every_member_sees_every_message_once_in_seq_order(daphne):
    room = await Room.create(daphne)
    names = ["alice", "bob", "carol"]
    for name in names[1:]:
        await room.join(name)
    sockets = [await room.connect(name) for name in names]
    start = (await sockets[0].expect("welcome"))["last_seq"]

    async def talk(index: int, socket: Socket) -> None:
        for i in range(8):
            await socket.send_text(f"{names[index]} {i}", f"{index}-{i}")

    await asyncio.gather(*(talk(i, s) for i, s in enumerate(sockets)))
    expected = list(range(start + 1, start + 1 + 24))
    for socket in sockets:
        received = await socket.messages(24)
        assert seqs(received) == expected
    # Per sender, the order of sending is kept.
    texts = [m["text"] for m in received]
    for name in names:
        assert [t for t in texts if t.startswith(name)] == [f"{name} {i}" for i in range(8)]
    for socket in sockets:
        await socket.close()


# ---- resume ----------------------------------------------------------------------------------


async def test_resume_replays_exactly_the_missed_messages_then_goes_live(fast_server):
    room = await Room.create(fast_server)
    await room.join("bob")
    alice, bob = await room.connect("alice"), await room.connect("bob")
    seen = (await bob.expect("welcome"))["last_seq"]
    await bob.close()

    acks = [await alice.send_text(f"missed {i}", f"m{i}") for i in range(50)]
    bob = await room.connect("bob")
    await bob.send({"type": "resume", "after_seq": seen})
    replayed = await bob.messages(50)
    assert seqs(replayed) == [a["seq"] for a in acks] == list(range(seen + 1, seen + 51))
    assert [m["text"] for m in replayed] == [f"missed {i}" for i in range(50)]

    live = await alice.send_text("live again", "live")
    after = await bob.next_message()
    assert (after["seq"], after["text"]) == (live["seq"], "live again")
    await alice.close()
    await bob.close()


async def test_resume_in_the_query_string_while_others_keep_talking(fast_server):
    """Messages sent during the replay arrive once, after it, with no gap."""
    room = await Room.create(fast_server)
    await room.join("bob")
    alice = await room.connect("alice")
    start = (await alice.expect("welcome"))["last_seq"]
    for i in range(300):
        await alice.send({"type": "message.send", "client_id": f"a{i}", "text": f"a{i}"})

    async def keep_talking() -> None:
        for i in range(300, 400):
            await alice.send({"type": "message.send", "client_id": f"a{i}", "text": f"a{i}"})

    talker = asyncio.create_task(keep_talking())
    bob = await room.connect("bob", after_seq=start)
    await talker
    received = await bob.messages(400)
    assert seqs(received) == list(range(start + 1, start + 401))
    await alice.close()
    await bob.close()


async def test_a_burst_of_a_thousand_reaches_every_member(fast_server):
    room = await Room.create(fast_server)
    for name in ("bob", "carol"):
        await room.join(name)
    alice, bob, carol = [await room.connect(n) for n in ("alice", "bob", "carol")]
    start = (await alice.expect("welcome"))["last_seq"]
    # Everyone reads while alice sends, as real clients do (a client that stops reading for
    # long enough is dropped by the server's keepalive and has to resume).
    readers = [asyncio.create_task(socket.messages(1000)) for socket in (bob, carol)]
    await asyncio.gather(
        *(alice.send({"type": "message.send", "client_id": f"b{i}", "text": f"burst {i}"}) for i in range(1000))
    )
    expected = list(range(start + 1, start + 1001))
    assert seqs(await alice.messages(1000)) == expected
    for reader in readers:
        assert seqs(await reader) == expected
    acks = [await alice.expect("message.ack") for _ in range(1000)]
    assert sorted(a["seq"] for a in acks) == expected
    history = await room.history("carol", after_seq=start, limit=500)
    assert len(history["messages"]) == 500 and history["has_more"] is True
    for socket in (alice, bob, carol):
        await socket.close()


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"text": "no type"}', "missing_field"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "message.send", "text": "no client id"}', "missing_field"),
        ('{"type": "read", "seq": "three"}', "invalid_field"),
        ('{"type": "typing", "active": 1}', "invalid_field"),
        ('{"type": "resume", "after_seq": true}', "invalid_field"),
        ('{"type": "message.send", "client_id": "x", "text": "   "}', "empty_message"),
        ('{"type": "message.send", "client_id": "x", "text": "' + "a" * 101 + '"}', "text_too_long"),
        ('{"type": "ping", "padding": "' + "a" * 3000 + '"}', "frame_too_large"),
        ('{"type": "option.choose", "message_id": "nope", "value": "a"}', "invalid"),
    ],
)
async def test_bad_frames_get_an_error_and_change_nothing_for_anyone(strict_server, frame, code):
    room = await Room.create(strict_server)
    await room.join("bob")
    alice, bob = await room.connect("alice"), await room.connect("bob")
    await alice.expect("welcome")
    await bob.expect("welcome")

    await alice.send(frame)
    error = await alice.expect("error")
    assert error["code"] == code if code != "invalid" else error["code"].startswith("invalid")
    assert error["detail"] and "Traceback" not in error["detail"]
    # The socket is still open and still works; bob saw only the good message.
    ack = await alice.send_text("still here", "good")
    seen = await frames_until(bob, "message.new", lambda f: f["message"]["id"] == ack["id"])
    assert [f["type"] for f in seen if f["type"] not in ("participants", "presence")] == ["message.new"]
    history = await room.history("bob", after_seq=0)
    assert [m["text"] for m in history["messages"] if m["kind"] != "system"] == ["still here"]
    await alice.close()
    await bob.close()


async def test_binary_frames_are_refused_with_an_error(strict_server):
    room = await Room.create(strict_server)
    alice = await room.connect("alice")
    await alice.ws.send(b"\x00\x01binary")
    assert (await alice.expect("error"))["code"] == "bad_json"
    await alice.send({"type": "ping"})
    await alice.expect("pong")
    await alice.close()


async def test_message_rate_limit_answers_the_send_that_went_over(strict_server):
    room = await Room.create(strict_server)
    alice = await room.connect("alice")
    for i in range(5):
        await alice.send_text(f"m{i}", f"ok{i}")
    await alice.send({"type": "message.send", "client_id": "sixth", "text": "one too many"})
    error = await alice.expect("error")
    assert (error["code"], error["client_id"]) == ("rate_limited", "sixth")
    history = await room.history("alice", after_seq=0)
    assert "one too many" not in [m["text"] for m in history["messages"]]
    await alice.close()


async def test_a_frame_flood_is_throttled_and_the_socket_survives(strict_server):
    room = await Room.create(strict_server)
    await room.join("bob")
    alice, bob = await room.connect("alice"), await room.connect("bob")
    await alice.expect("welcome")
    for _ in range(100):
        await alice.send({"type": "ping"})
    answers: list[dict] = []
    while len(answers) < 100:  # participants frames may interleave; read until 100 answers
        frame = await alice.recv()
        if frame["type"] in ("pong", "error"):
            answers.append(frame)
    codes = {a.get("code") for a in answers if a["type"] == "error"}
    assert codes == {"rate_limited"}
    assert sum(a["type"] == "pong" for a in answers) >= 30  # the burst allowance went through
    # Tokens come back with time: retry (each try awaits its answer) until a pong arrives.
    while True:
        await alice.send({"type": "ping"})
        answer = await alice.recv()
        if answer["type"] == "pong":
            break
        assert answer["type"] in ("error", "participants", "presence")
    # bob is unaffected and still hears alice.
    await bob.expect("welcome")
    while True:
        await alice.send({"type": "message.send", "client_id": "after-flood", "text": "calm"})
        answer = await alice.recv()
        if answer["type"] == "message.ack":
            break
        assert answer.get("code") == "rate_limited" or answer["type"] in ("participants", "presence")
    assert (await bob.next_message())["text"] == "calm"
    await alice.close()
    await bob.close()


# ---- who may connect -------------------------------------------------------------------------


async def test_close_codes_for_missing_wrong_and_foreign_tokens(daphne):
    room = await Room.create(daphne)
    other = await Room.create(daphne, owner="mallory")
    cases = [
        (room.id, None, 4401, "unauthenticated"),
        (room.id, "not-a-token", 4401, "unauthenticated"),
        (room.id, uuid.uuid4().hex + ".secret", 4401, "unauthenticated"),
        (room.id, room.tokens["alice"].split(".")[0] + ".wrong-secret", 4401, "unauthenticated"),
        (room.id, other.tokens["mallory"], 4403, "not_participant"),
        (str(uuid.uuid4()), room.tokens["alice"], 4404, "not_found"),
        ("not-a-uuid", room.tokens["alice"], 4404, "not_found"),
    ]
    for conversation_id, token, close_code, error_code in cases:
        socket = await Socket.connect(daphne, conversation_id, token)
        error = await socket.recv()
        assert (error["type"], error["code"]) == ("error", error_code), (conversation_id, token)
        assert await socket.closed_with() == close_code


async def test_a_participant_who_left_cannot_reconnect(daphne):
    room = await Room.create(daphne)
    token = await room.join("bob")
    async with httpx.AsyncClient(base_url=daphne.http_url) as http:
        r = await http.post(f"/api/conversations/{room.id}/leave", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    socket = await room.connect("bob")
    assert (await socket.recv())["type"] == "error"
    assert await socket.closed_with() == 4403


# ---- typing, read marks, presence --------------------------------------------------------------


async def test_typing_expires_by_itself(strict_server):
    room = await Room.create(strict_server)
    await room.join("bob")
    alice, bob = await room.connect("alice"), await room.connect("bob")
    alice_id = room.participants["alice"]["id"]
    await alice.send({"type": "typing", "active": True})
    on = await bob.expect("typing")
    assert (on["participant_id"], on["active"], on["ttl"]) == (alice_id, True, 1)
    # alice says nothing more: the server ends the indicator after TYPING_TTL.
    off = await bob.expect("typing")
    assert (off["participant_id"], off["active"]) == (alice_id, False)
    await alice.close()
    await bob.close()


async def test_a_client_that_vanishes_stops_typing_and_goes_offline(daphne):
    room = await Room.create(daphne)
    await room.join("bob")
    alice = await room.connect("alice")
    bob = await room.connect("bob")
    bob_id = room.participants["bob"]["id"]
    room_for_bob = await bob.expect("welcome")  # the room, for the socket that connects
    assert {p["name"]: p["online"] for p in room_for_bob["participants"]} == {"alice": True, "bob": True}
    online = await alice.expect("presence")  # the others: bob's flag alone
    assert [(c["participant_id"], c["online"]) for c in online["changes"]] == [(bob_id, True)]
    room_for_alice = await alice.expect("welcome")
    assert {p["name"]: p["online"] for p in room_for_alice["participants"]} == {"alice": True, "bob": False}
    assert room_for_alice["presence_version"] < online["changes"][0]["version"] == room_for_bob["presence_version"]

    await bob.send({"type": "typing", "active": True})
    assert (await alice.expect("typing"))["active"] is True
    await bob.close()
    off = await alice.expect("typing")
    assert (off["participant_id"], off["active"]) == (bob_id, False)
    await alice.expect("presence", turned(bob_id, False))
    await alice.close()


async def test_presence_counts_sockets_not_connections(daphne):
    """A participant with two tabs stays online until the last one closes."""
    room = await Room.create(daphne)
    await room.join("bob")
    bob_id = room.participants["bob"]["id"]
    alice = await room.connect("alice")
    tab1, tab2 = await room.connect("bob"), await room.connect("bob")
    await tab1.expect("welcome")
    await tab2.expect("welcome")
    await alice.expect("presence", turned(bob_id, True))
    await tab1.close()
    await tab2.send({"type": "ping"})
    await tab2.expect("pong")  # tab2 is still served after tab1 went
    # tab1's close turned no flag (bob is still online: the store's own tests cover when),
    # so the frame after bob came online is the one that says the last tab went.
    await tab2.close()
    off = await alice.expect("presence", lambda f: any(c["participant_id"] == bob_id for c in f["changes"]))
    assert [(c["participant_id"], c["online"]) for c in off["changes"]] == [(bob_id, False)]
    await alice.close()


async def test_read_marks_are_shared_and_stored(daphne):
    room = await Room.create(daphne)
    await room.join("bob")
    alice, bob = await room.connect("alice"), await room.connect("bob")
    ack = await alice.send_text("read me", "r1")
    await bob.next_message()
    await bob.send({"type": "read", "seq": ack["seq"]})
    mark = await alice.expect("read")
    assert (mark["participant_id"], mark["seq"]) == (room.participants["bob"]["id"], ack["seq"])
    await bob.send({"type": "read", "seq": 1})  # never moves back
    await bob.send({"type": "ping"})
    await bob.expect("pong")
    async with httpx.AsyncClient(base_url=daphne.http_url) as http:
        r = await http.get(f"/api/conversations/{room.id}", headers={"Authorization": f"Bearer {room.tokens['bob']}"})
    people = {p["name"]: p for p in r.json()["participants"]}
    assert people["bob"]["last_read_seq"] == ack["seq"]
    await alice.close()
    await bob.close()


# ---- system events -----------------------------------------------------------------------------


async def test_join_leave_and_end_arrive_live(daphne):
    room = await Room.create(daphne)
    alice = await room.connect("alice")
    await alice.expect("welcome")
    token = await room.join("carol")
    joined = await alice.next_message()
    assert (joined["kind"], joined["data"]["event"], joined["data"]["participant"]["name"]) == (
        "system",
        "joined",
        "carol",
    )
    async with httpx.AsyncClient(base_url=daphne.http_url) as http:
        r = await http.post(f"/api/conversations/{room.id}/end", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403  # a member cannot end the room
        r = await http.post(f"/api/conversations/{room.id}/leave", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    left = await alice.next_message()
    assert (left["data"]["event"], left["seq"]) == ("left", joined["seq"] + 1)

    async with httpx.AsyncClient(base_url=daphne.http_url) as http:
        r = await http.post(
            f"/api/conversations/{room.id}/end", headers={"Authorization": f"Bearer {room.tokens['alice']}"}
        )
        assert r.status_code == 200
    ended = await alice.next_message()
    assert (ended["data"]["event"], ended["seq"]) == ("ended", left["seq"] + 1)
    await alice.expect("conversation.ended")
    await alice.send({"type": "message.send", "client_id": "late", "text": "anyone?"})
    error = await alice.expect("error")
    assert (error["code"], error["client_id"]) == ("conversation_ended", "late")
    await alice.close()


# ---- scale-out -------------------------------------------------------------------------------


async def test_two_daphne_processes_share_one_room_over_redis(start_daphne):
    """Clients on two processes converse, see each other online and resume on either one."""
    redis = {"REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"}
    one, two = start_daphne(redis), start_daphne(redis)
    room = await Room.create(one)
    await room.join("bob")
    alice = await room.connect("alice", server=one)
    bob = await room.connect("bob", server=two)
    bob_id, alice_id = room.participants["bob"]["id"], room.participants["alice"]["id"]
    await alice.expect("presence", turned(bob_id, True))  # heard across processes
    assert any(p["id"] == alice_id and p["online"] for p in (await bob.expect("welcome"))["participants"])

    hello = await alice.send_text("hello from one", "x1")
    assert (await bob.next_message())["seq"] == hello["seq"]
    reply = await bob.send_text("hello from two", "x2")
    assert [m["seq"] for m in await alice.messages(2)] == [hello["seq"], reply["seq"]]

    # Both processes publish at once: frames from the two can overtake each other on the way,
    # yet a third client sees one gap-free run in seq order.
    await room.join("carol")
    carol = await room.connect("carol", server=one)
    start = (await carol.expect("welcome"))["last_seq"]
    await asyncio.gather(
        *(alice.send({"type": "message.send", "client_id": f"a{i}", "text": "a"}) for i in range(15)),
        *(bob.send({"type": "message.send", "client_id": f"b{i}", "text": "b"}) for i in range(15)),
    )
    assert seqs(await carol.messages(30)) == list(range(start + 1, start + 31))
    await carol.close()
    for socket in (alice, bob):
        assert len({m["seq"] for m in await socket.messages(31)}) == 31  # carol's join + 30

    await bob.close()
    await alice.expect("presence", turned(bob_id, False))
    missed = [await alice.send_text(f"while away {i}", f"w{i}") for i in range(5)]
    bob = await room.connect("bob", server=one)  # comes back on the other process
    await bob.send({"type": "resume", "after_seq": missed[0]["seq"] - 1})  # the last one bob saw
    assert seqs(await bob.messages(5)) == [a["seq"] for a in missed]
    await alice.close()
    await bob.close()
    assert one.tracebacks() == [] and two.tracebacks() == []
