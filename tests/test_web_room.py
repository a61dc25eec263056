"""The web pages in a real browser: Playwright driving Debian's Chromium against live daphne.

Each test starts from the lobby or a share link like a person would, with separate browser
contexts for separate people. Waiting is always Playwright's ``expect`` (auto-retrying up to a
bound), never a sleep. Screenshots go to ``$CHAT_VAR_DIR/artefacts/`` (``var/artefacts/``).
"""

from __future__ import annotations

import json
import os
import re
import struct
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from tests.live import limits_env

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 20_000

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=WAIT_MS)


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def artefacts() -> Path:
    folder = Path(settings.VAR_DIR) / "artefacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop in this thread; Django's ORM guard would then
    # refuse the test's own database calls (fixtures, flush) although nothing here is async.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Person:
    """One browser context (its own cookies: its own session) with one page."""

    def __init__(self, browser, server, name: str, *, viewport=None) -> None:
        self.name = name
        self.server = server
        self.context = browser.new_context(viewport=viewport or {"width": 1200, "height": 800})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", self._console)

    def _console(self, msg) -> None:
        # JS errors and CSP refusals count; a refused request (e.g. an upload's 413) is expected.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(msg.text)

    def goto(self, path: str):
        return self.page.goto(self.server.http_url + path)

    def create(self, name: str = "Web room", bots: list[str] = ()) -> str:
        """Create a conversation from the lobby; returns its id (the page is then the room)."""
        self.goto("/")
        self.page.get_by_label("Conversation name").fill(name)
        self.page.get_by_label("Your nickname").fill(self.name)
        for bot in bots:
            self.page.locator(f"input[name=bots][value='{bot}']").check()
        self.page.get_by_role("button", name="Create conversation").click()
        self.page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
        self.wait_connected()
        return self.page.url.rstrip("/").rsplit("/", 1)[-1]

    def join(self, conversation_id: str) -> None:
        self.goto(f"/c/{conversation_id}/")
        self.page.get_by_label("Your nickname").fill(self.name)
        self.page.get_by_role("button", name="Join conversation").click()
        self.wait_connected()

    def wait_connected(self) -> None:
        expect(self.page.locator("#conn-state")).to_have_text("Connected")

    def say(self, text: str) -> None:
        box = self.page.get_by_label("Message", exact=True)
        box.fill(text)
        box.press("Enter")

    def message(self, text: str):
        return self.page.locator("#messages li.msg:not(.system)", has_text=text)

    def shot(self, artefacts: Path, name: str) -> None:
        self.page.screenshot(path=str(artefacts / f"{name}.png"), full_page=False)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def people(browser):
    made: list[Person] = []

    def make(server, name: str, **kwargs) -> Person:
        person = Person(browser, server, name, **kwargs)
        made.append(person)
        return person

    yield make
    for person in made:
        person.close()


def tiny_png() -> bytes:
    """A valid 1x1 PNG, made here (no fixture files)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x4f\x46\xe5")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def off_loop(fn, *args, **kwargs):
    """Run a call of the chat domain in a worker thread: Playwright's sync API keeps an event
    loop in the test's thread, where Chat's after-commit ``async_to_sync`` fan-out may not run."""

    def call():
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def chat_of(conversation_id: str):
    from conversations.chat import Chat

    return off_loop(Chat.get_chat, conversation_id)


# ---- tests ------------------------------------------------------------------------------------


def test_two_people_chat_live(daphne, people, artefacts):
    alice = people(daphne, "Alice")
    response = alice.goto("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src", 1)[1].split(";")[0]
    expect(alice.page.locator("input[name=bots][value=echo]")).to_be_visible()  # from GET /api/bots
    conversation_id = alice.create("Team sync")
    expect(alice.page.locator("#messages li.system", has_text="Alice created the conversation")).to_be_visible()

    bob = people(daphne, "Bob")
    bob.join(conversation_id)
    expect(alice.page.locator("#messages li.system", has_text="Bob joined")).to_be_visible()
    expect(alice.page.locator("#people-list .person.online", has_text="Bob")).to_be_visible()

    alice.say("Hello Bob!")
    expect(bob.message("Hello Bob!")).to_contain_text("Alice")
    expect(bob.page.locator("#announcer")).to_contain_text("Alice: Hello Bob!")  # ARIA live region
    expect(alice.message("Hello Bob!")).not_to_have_class(re.compile(r"pending"))

    # Typing shows on the other side; Shift+Enter makes a new line, Enter sends.
    box = bob.page.get_by_label("Message", exact=True)
    box.press_sequentially("Hi Alice")
    expect(alice.page.locator("#typing")).to_have_text("Bob is typing…")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    box.press("Enter")
    reply = alice.message("second line")
    expect(reply).to_be_visible()
    assert reply.locator(".text").inner_text() == "Hi Alice\nsecond line"
    expect(alice.page.locator("#typing")).to_have_text("")
    expect(alice.page.locator(".seen", has_text="Seen by Bob")).to_be_visible()
    alice.shot(artefacts, "web-room-alice")

    # Bob comes back on the same browser: the same participant, no join form, history there.
    bob.page.reload()
    bob.wait_connected()
    expect(bob.page.locator("#me-name")).to_have_text("Bob")
    expect(bob.message("Hello Bob!")).to_have_count(1)
    assert bob.page.locator("#join-form").count() == 0

    # The lobby lists the conversation with its share link.
    alice.goto("/")
    item = alice.page.locator(".recent-item", has_text="Team sync")
    expect(item).to_be_visible()
    expect(item.locator("input.share-input")).to_have_value(f"{daphne.http_url}/c/{conversation_id}/")
    alice.shot(artefacts, "web-lobby")

    # Phone width.
    phone = people(daphne, "Carol", viewport={"width": 390, "height": 780})
    phone.join(conversation_id)
    expect(phone.message("second line")).to_be_visible()
    phone.page.get_by_role("button", name=re.compile("People")).click()
    expect(phone.page.locator("#people-list")).to_contain_text("Alice")
    phone.shot(artefacts, "web-room-phone")

    # Presence as it changes: Alice's page went to the lobby (her socket closed), then Bob's goes.
    listed = phone.page.locator("#people-list .person")
    expect(listed.filter(has_text="Bob")).to_have_class(re.compile(r"\bonline\b"))
    expect(listed.filter(has_text="Alice")).not_to_have_class(re.compile(r"\bonline\b"))
    expect(listed.filter(has_text="Alice")).to_contain_text("offline")
    bob.page.close()
    expect(listed.filter(has_text="Bob")).not_to_have_class(re.compile(r"\bonline\b"))
    for person in (alice, bob, phone):
        assert not person.errors, person.errors


def test_user_text_is_never_markup(daphne, people, artefacts):
    mallory = people(daphne, '<img src=x onerror="window.__xss=3">')
    conversation_id = mallory.create('<b onmouseover="window.__xss=4">room</b>')
    victim = people(daphne, "Victim")
    victim.join(conversation_id)
    payloads = [
        "<script>window.__xss = 1</script>",
        '<img src=x onerror="window.__xss=2">',
        "[click](javascript:window.__xss=5) **bold**",
    ]
    for text in payloads:
        mallory.say(text)
    for text in payloads:
        expect(victim.message(text)).to_have_count(1)
        assert victim.message(text).locator(".text").inner_text() == text
    assert victim.page.locator("#messages img").count() == 0
    assert victim.page.locator("#messages script").count() == 0
    assert victim.page.locator("#messages a[href^='javascript']").count() == 0
    expect(victim.page.locator("#people-list")).to_contain_text('<img src=x onerror="window.__xss=3">')
    victim.goto("/")
    expect(victim.page.locator(".recent-name")).to_have_text('<b onmouseover="window.__xss=4">room</b>')
    victim.goto(f"/c/{conversation_id}/")
    victim.wait_connected()
    expect(victim.message(payloads[1])).to_be_visible()
    victim.shot(artefacts, "web-xss")
    for person in (mallory, victim):
        assert person.page.evaluate("window.__xss") is None


def test_uploads_limits_and_previews(start_daphne, people, artefacts):
    server = start_daphne(limits_env(MAX_IMAGE_SIZE=1000, MAX_ATTACHMENT_SIZE=20_000))
    alice = people(server, "Alice")
    conversation_id = alice.create("Files")
    bob = people(server, "Bob")
    bob.join(conversation_id)
    picker = alice.page.locator("#file-input")
    error = alice.page.locator("#upload-error")

    # Over the image limit read from /api/limits: refused before any upload.
    big = tiny_png() + b"\0" * 4000
    picker.set_input_files([{"name": "big.png", "mimeType": "image/png", "buffer": big}])
    expect(error).to_be_visible()
    expect(error).to_contain_text("“big.png” is")
    expect(error).to_contain_text("images may be at most 1000 B")
    expect(alice.page.locator("#tray")).to_be_hidden()

    # The browser thinks it is text; the server judges the bytes (an image) and refuses it.
    picker.set_input_files([{"name": "sneaky.txt", "mimeType": "text/plain", "buffer": big}])
    expect(error).to_contain_text("“sneaky.txt” was not uploaded")
    expect(error).to_contain_text("the limit for image files is 1000 bytes")
    expect(alice.page.locator(".tray-item.error", has_text="sneaky.txt")).to_be_visible()
    alice.shot(artefacts, "web-upload-refused")
    alice.page.get_by_role("button", name="Remove sneaky.txt").click()

    # Within the limits: a progress bar, then "Ready"; sent with text; previews on both sides.
    picker.set_input_files(
        [
            {"name": "dot.png", "mimeType": "image/png", "buffer": tiny_png()},
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"plain notes\n" * 10},
        ]
    )
    expect(alice.page.locator(".tray-item.done")).to_have_count(2)
    alice.say("two files")
    message = bob.message("two files")
    image = message.locator("img.preview-image")
    expect(image).to_have_attribute("alt", "dot.png")
    expect(message.locator("a.file-link", has_text="notes.txt")).to_be_visible()
    bob.page.wait_for_function(
        "() => { const i = document.querySelector('img.preview-image'); return i && i.complete && i.naturalWidth > 0; }"
    )
    bob.shot(artefacts, "web-upload-preview")
    assert not alice.errors and not bob.errors, alice.errors + bob.errors


def test_dropped_and_pasted_files_join_the_tray_and_are_sent(daphne, people):
    """Files dropped on the timeline or pasted into the composer go the picker's way."""
    alice = people(daphne, "Alice")
    conversation_id = alice.create("Drops")
    bob = people(daphne, "Bob")
    bob.join(conversation_id)
    page = alice.page
    files = page.evaluate_handle(
        """() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["dropped notes"], "dropped.txt", {type: "text/plain"}));
            return dt;
        }"""
    )
    page.dispatch_event("#timeline", "dragenter", {"dataTransfer": files})
    expect(page.locator("#drop-zone")).to_be_visible()
    page.dispatch_event("#timeline", "drop", {"dataTransfer": files})
    expect(page.locator("#drop-zone")).to_be_hidden()
    expect(page.locator(".tray-item.done", has_text="dropped.txt")).to_be_visible()
    # A pasted screenshot comes as "image.png" (or nameless): it gets a name of its own.
    page.evaluate(
        """(png) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(png)], "image.png", {type: "image/png"}));
            const input = document.getElementById("message-input");
            input.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true}));
        }""",
        list(tiny_png()),
    )
    expect(page.locator(".tray-item.done")).to_have_count(2)
    expect(page.locator(".tray-item.done", has_text="pasted-")).to_be_visible()
    alice.say("from the desktop")
    message = bob.message("from the desktop")
    expect(message.locator("a.file-link", has_text="dropped.txt")).to_be_visible()
    expect(message.locator("img.preview-image")).to_have_attribute("alt", re.compile(r"^pasted-\d+-0\.png$"))
    assert not alice.errors and not bob.errors, alice.errors + bob.errors


def test_server_restart_recovers_and_shows_missed(start_daphne, people, artefacts):
    server = start_daphne()
    alice = people(server, "Alice")
    conversation_id = alice.create("Restart")
    bob = people(server, "Bob")
    bob.join(conversation_id)
    alice.say("before the restart")
    expect(bob.message("before the restart")).to_be_visible()

    server.stop()
    expect(alice.page.locator("#conn-state")).to_contain_text("Offline")
    expect(alice.page.locator("#conn-state")).to_have_class(re.compile("conn-offline"))
    alice.say("written while offline")
    expect(alice.message("written while offline")).to_contain_text("Waiting for connection")
    alice.shot(artefacts, "web-restart-offline")

    # Someone else writes while the server is down (straight into the shared database).
    chat = chat_of(conversation_id)
    carol = off_loop(chat.join, "Carol")
    off_loop(chat.save_message, carol, {"text": "missed while you were away", "client_id": "carol-1"})

    server.start()
    alice.wait_connected()
    bob.wait_connected()
    for person in (alice, bob):
        expect(person.message("missed while you were away")).to_have_count(1)
        expect(person.message("written while offline")).to_have_count(1)
        expect(person.message("before the restart")).to_have_count(1)
    expect(alice.message("written while offline")).not_to_have_class(re.compile("pending"))

    # After it is back: a message through the HTTP API of the restarted server.
    token = carol.token
    r = httpx.post(
        f"{server.http_url}/api/conversations/{conversation_id}/messages",
        json={"text": "after the restart", "client_id": "carol-2"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    expect(alice.message("after the restart")).to_have_count(1)
    seqs = alice.page.eval_on_selector_all("#messages li[data-seq]", "els => els.map(e => Number(e.dataset.seq))")
    assert seqs == sorted(set(seqs)), seqs  # in order, nothing twice
    alice.shot(artefacts, "web-restart-recovered")


def test_bot_rich_replies_and_option_click(daphne, people, artefacts):
    alice = people(daphne, "Alice")
    conversation_id = alice.create("Bots")
    chat = chat_of(conversation_id)
    bot = off_loop(chat.add_bot, "echo")
    offer = off_loop(
        chat.save_message,
        bot,
        {
            "kind": "options",
            "text": "Pick one",
            "data": {"options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]},
        },
    )
    off_loop(
        chat.save_message,
        bot,
        {
            "kind": "table",
            "text": "Scores",
            "data": {"columns": ["name", "score"], "rows": [["<b>x</b>", 1], ["y", 2]]},
        },
    )
    off_loop(
        chat.save_message,
        bot,
        {
            "kind": "chart",
            "text": "Trend",
            "data": {
                "figure": {
                    "data": [{"type": "bar", "x": ["a", "b"], "y": [3, 5]}],
                    "layout": {"title": {"text": "Trend"}},
                }
            },
        },
    )
    off_loop(
        chat.save_message,
        bot,
        {"kind": "location", "text": "Office", "data": {"latitude": 52.52, "longitude": 13.405, "label": "Office"}},
    )
    off_loop(
        chat.save_message,
        bot,
        {"kind": "markdown", "text": "**Bold** and [a link](https://example.org) and [bad](javascript:alert(1))"},
    )
    # These were saved in this process: with the in-memory layer the page has not heard of them
    # yet; the next live message shows a gap in seq, which the page fills from the history API.
    alice.say("anything new?")

    page = alice.page
    options = alice.message("Pick one")
    expect(options.locator(".badge")).to_have_text("bot")
    table = page.locator("table.data-table")
    expect(table.locator("caption")).to_have_text("Scores")
    expect(table.locator("th")).to_have_text(["name", "score"])
    expect(table.locator("td").first).to_have_text("<b>x</b>")
    expect(page.locator(".chart[data-rendered=true] .main-svg").first).to_be_visible()  # plotly.js, local
    osm = page.locator(".location a")
    expect(osm).to_have_attribute("href", re.compile(r"^https://www\.openstreetmap\.org/\?mlat=52\.52&mlon=13\.405"))
    expect(page.locator(".location")).to_contain_text("52.52000, 13.40500")
    md = alice.message("and a link")
    expect(md.locator("strong")).to_have_text("Bold")
    expect(md.locator("a")).to_have_count(1)
    expect(md.locator("a")).to_have_attribute("href", "https://example.org/")

    options.get_by_role("button", name="A", exact=True).press("Enter")  # keyboard works like a click
    answer = page.locator("#messages li.msg.mine", has=page.locator(".quote", has_text="Pick one"))
    expect(answer).to_contain_text("A")
    expect(options.get_by_role("button", name="A", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#upload-error")).to_be_hidden()  # the choice was acknowledged, not refused
    from conversations.models import Message

    assert Message.objects.filter(quoted_message=offer, data__option__value="a").count() == 1
    alice.shot(artefacts, "web-bot-replies")
    assert not alice.errors, alice.errors


def test_scroll_back_loads_older_history(daphne, people, settings):
    settings.CHAT_LIMITS = {"RATE_LIMIT_MESSAGES": 1000}
    alice = people(daphne, "Alice")
    conversation_id = alice.create("Long")
    chat = chat_of(conversation_id)
    bob = off_loop(chat.join, "Bob")

    def write() -> None:
        for i in range(1, 81):
            chat.save_message(bob, {"text": f"old message {i:02d}", "client_id": f"old-{i}"})

    off_loop(write)
    alice.page.reload()
    alice.wait_connected()
    page = alice.page
    expect(alice.message("old message 80")).to_be_visible()
    expect(page.locator("#messages li.msg")).to_have_count(50)  # the newest page only
    assert alice.message("old message 01").count() == 0
    page.locator("#timeline").evaluate("t => { t.scrollTop = 0; }")  # reading upwards loads more
    expect(alice.message("old message 01")).to_have_count(1)
    expect(page.locator("#history-start")).to_be_visible()
    texts = page.locator("#messages li.msg:not(.system) .text").all_inner_texts()
    assert texts == [f"old message {i:02d}" for i in range(1, 81)]


def test_echo_bot_answers_in_the_page(start_daphne, people, artefacts):
    # The bot worker runs inside daphne (its default without Redis; forced on with Redis too).
    server = start_daphne({"CHAT_EMBEDDED_BOT_WORKER": "1"})
    alice = people(server, "Alice")
    alice.create("Echo", bots=["echo"])
    expect(alice.page.locator("#people-list .person", has_text="echo")).to_contain_text("bot")
    alice.say("hello, bot")
    answer = alice.page.locator("#messages li.msg.bot", has_text="hello, bot")
    expect(answer).to_be_visible()
    expect(answer.locator(".sender")).to_have_text("echo")
    expect(answer.locator(".badge")).to_have_text("bot")
    expect(alice.page.locator("#announcer")).to_contain_text("echo: hello, bot")
    alice.shot(artefacts, "web-echo-bot")
    assert not alice.errors, alice.errors


def test_moderation_effects(daphne, people, artefacts):
    alice = people(daphne, "Alice")
    conversation_id = alice.create("Moderated")
    bob = people(daphne, "Bob")
    bob.join(conversation_id)
    chat = chat_of(conversation_id)
    from conversations.models import Participant

    bob_row = Participant.objects.get(conversation_id=conversation_id, name="Bob")
    # The participants frame his socket gets as it connects shows him online and carries his
    # muted_until: once it is in, the page cannot learn of the mute before the send does.
    expect(bob.page.locator("#people-list .person.online", has_text="Bob (you)")).to_be_visible()
    Participant.objects.filter(pk=bob_row.pk).update(muted_until=timezone.now() + timedelta(minutes=10))
    bob.say("can I still talk?")
    failed = bob.message("can I still talk?")
    expect(failed).to_have_class(re.compile("failed"))
    expect(failed).to_contain_text("Not sent: you are muted")
    expect(bob.page.locator("#banner")).to_contain_text("You are muted until")
    expect(bob.page.get_by_label("Message", exact=True)).to_be_disabled()
    bob.shot(artefacts, "web-muted")

    off_loop(chat.end, reason="done")
    alice.page.reload()
    expect(alice.page.locator("#banner")).to_contain_text("This conversation has ended")
    expect(alice.page.get_by_label("Message", exact=True)).to_be_disabled()
    expect(alice.page.locator("#messages li.system", has_text="The conversation ended")).to_be_visible()
    alice.shot(artefacts, "web-ended")


def test_the_page_keeps_the_newest_presence_it_has_heard(daphne, people):
    """Presence frames from several server processes can overtake each other: the page keeps,
    per person, the flag of the highest version, from a list or from a change, and a change
    about someone it does not list yet waits for them. Frames are added to the page's own
    socket (proxied to the server) after the server's."""
    from conversations import protocol
    from conversations.models import Participant

    alice = people(daphne, "Alice")
    sockets = []

    def proxy(ws) -> None:
        ws.connect_to_server()  # the server's frames pass through; the test adds its own
        sockets.append(ws)

    alice.page.route_web_socket(re.compile(r"/ws/conversations/"), proxy)
    conversation_id = alice.create("Presence")
    bob = people(daphne, "Bob")
    bob.join(conversation_id)
    listed, online = alice.page.locator("#people-list .person"), re.compile(r"\bonline\b")
    expect(listed.filter(has_text="Bob")).to_have_class(online)  # the server's change
    bob_id = str(Participant.objects.get(conversation_id=conversation_id, name="Bob").pk)

    def inject(frame: dict) -> None:
        sockets[-1].send(json.dumps(frame))

    def change(participant_id: str, is_online: bool, version: int) -> dict:
        return {
            "type": "presence",
            "changes": [{"participant_id": participant_id, "online": is_online, "version": version}],
        }

    def read_so_far() -> None:
        """A typing frame after the others: once it shows, the page has read them all."""
        inject({"type": "typing", "participant_id": bob_id, "active": True, "ttl": 30})
        expect(alice.page.locator("#typing")).to_have_text("Bob is typing…")
        inject({"type": "typing", "participant_id": bob_id, "active": False, "ttl": 30})
        expect(alice.page.locator("#typing")).to_have_text("")

    inject(change(bob_id, False, 0))  # older than the server's: ignored
    read_so_far()
    expect(listed.filter(has_text="Bob")).to_have_class(online)
    inject(change(bob_id, False, 10**6))  # newer: Bob goes offline
    expect(listed.filter(has_text="Bob")).not_to_have_class(online)

    rows = Participant.objects.filter(conversation_id=conversation_id).order_by("joined_at")
    everyone = [protocol.participant_to_dict(p, online=True) for p in rows]
    carol_id = str(uuid.uuid4())
    inject(change(carol_id, False, 10**6 + 2))  # Carol is not listed yet: kept for when she is
    carol = {**everyone[-1], "id": carol_id, "name": "Carol"}
    inject({"type": "participants", "participants": [*everyone, carol], "presence_version": 10**6 - 1})
    read_so_far()
    expect(listed.filter(has_text="Carol")).not_to_have_class(online)  # her change is newer than the list
    expect(listed.filter(has_text="Bob")).not_to_have_class(online)  # so is Bob's
    expect(listed.filter(has_text="Alice")).to_have_class(online)  # the list's, where nothing newer was heard
    inject(change(bob_id, True, 10**6 + 1))
    expect(listed.filter(has_text="Bob")).to_have_class(online)
    assert not alice.errors, alice.errors
