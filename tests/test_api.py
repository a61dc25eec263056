"""The HTTP API at /api/, through real requests: contracts, authorisation and clear errors."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from conversations.chat import Chat
from conversations.models import Attachment, Conversation, Message, Participant
from tests.foundation_helpers import MP4, PNG, TEXT, bearer, payload

pytestmark = pytest.mark.django_db

MESSAGE_KEYS = {
    "id",
    "seq",
    "conversation_id",
    "sender",
    "kind",
    "text",
    "data",
    "attachments",
    "quoted_message_id",
    "client_id",
    "approval",
    "hidden",
    "created_at",
    "edited_at",
}


def create(client: Client | None = None, **body) -> dict:
    r = (client or Client()).post("/api/conversations", body, content_type="application/json")
    assert r.status_code == 201, r.content
    return r.json()


def join(conversation_id: str, nickname: str = "bob", client: Client | None = None):
    return (client or Client()).post(
        f"/api/conversations/{conversation_id}/join", {"nickname": nickname}, content_type="application/json"
    )


def get(path: str, token: str | None = None):
    return Client().get(path, **(bearer(token) if token else {}))


def post(path: str, body, token: str | None = None):
    return Client().post(path, body, content_type="application/json", **(bearer(token) if token else {}))


def error(r, status: int, code: str) -> str:
    """Assert a JSON error body with that status and code; return its detail."""
    assert r.status_code == status, r.content
    assert r["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["detail"]
    return body["error"]["detail"]


@pytest.fixture
def room() -> dict:
    """A conversation made over HTTP by alice, with the echo bot."""
    return create(name="Room", nickname="alice", bots=["echo"])


def url(room: dict, tail: str = "") -> str:
    return f"/api/conversations/{room['conversation']['id']}{tail}"


# ---- create and join ------------------------------------------------------------------------


def test_create_conversation(room):
    assert set(room) == {"conversation", "participant", "token", "participants"}
    conversation = room["conversation"]
    assert (conversation["name"], conversation["status"], conversation["ended_at"]) == ("Room", "open", None)
    assert Conversation.objects.filter(pk=conversation["id"]).exists()
    me = room["participant"]
    assert (me["name"], me["kind"], me["role"], me["bot"]) == ("alice", "human", "owner", None)
    assert [(p["kind"], p["bot"]) for p in room["participants"]] == [("human", None), ("bot", "echo")]
    assert room["participants"][0]["id"] == me["id"]


def test_tokens_are_stored_hashed(room):
    stored = Participant.objects.get(pk=room["participant"]["id"])
    assert stored.token_hash and room["token"] != stored.token_hash
    assert room["token"].split(".")[1] not in stored.token_hash


def test_create_with_defaults_generates_names():
    body = create()
    assert body["conversation"]["name"] == "Conversation"
    assert body["participant"]["name"].startswith("Guest-")
    assert [p["kind"] for p in body["participants"]] == ["human"]


def test_create_with_an_unknown_bot_is_refused():
    before = Conversation.objects.count()
    detail = error(post("/api/conversations", {"bots": ["echo", "nosuchbot"]}), 400, "unknown_bot")
    assert "nosuchbot" in detail
    assert Conversation.objects.count() == before


def test_join(room):
    r = join(room["conversation"]["id"], "bob")
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"participant", "token"}
    assert (body["participant"]["name"], body["participant"]["role"]) == ("bob", "member")
    me = get(url(room), body["token"]).json()["participant"]
    assert me["id"] == body["participant"]["id"]


def test_join_with_an_empty_nickname_gets_a_generated_one(room):
    assert join(room["conversation"]["id"], "").json()["participant"]["name"].startswith("Guest-")


@pytest.mark.parametrize("conversation_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_join_unknown_conversation_is_404(conversation_id):
    error(join(conversation_id), 404, "not_found")


def test_join_an_ended_conversation_is_409(room):
    Chat.get_chat(room["conversation"]["id"]).end()
    error(join(room["conversation"]["id"]), 409, "conversation_ended")


def test_join_an_invite_only_conversation_is_403(room):
    Conversation.objects.filter(pk=room["conversation"]["id"]).update(join_policy="invite")
    error(join(room["conversation"]["id"]), 403, "invite_only")


# ---- reading a conversation and who may -----------------------------------------------------


def test_get_conversation(room):
    bob = join(room["conversation"]["id"], "bob").json()
    r = get(url(room), bob["token"])
    assert r.status_code == 200
    body = r.json()
    assert body["conversation"]["id"] == room["conversation"]["id"]
    assert body["participant"]["id"] == bob["participant"]["id"]
    assert [p["name"] for p in body["participants"]] == ["alice", "echo", "bob"]


@pytest.mark.parametrize("tail", ["", "/messages"])
def test_without_a_token_is_401(room, tail):
    error(get(url(room, tail)), 401, "unauthenticated")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        f"{uuid.uuid4().hex}.secret",  # an unknown participant
        "Bearer",
    ],
)
def test_a_wrong_token_is_401(room, token):
    error(get(url(room, "/messages"), token), 401, "unauthenticated")


def test_the_right_participant_with_a_wrong_secret_is_401(room):
    prefix = room["token"].split(".")[0]
    error(get(url(room, "/messages"), f"{prefix}.not-the-secret"), 401, "unauthenticated")
    error(post(url(room, "/messages"), {"text": "hi"}, f"{prefix}.x"), 401, "unauthenticated")
    assert not Message.objects.filter(sender_id=room["participant"]["id"]).exists()


def test_another_conversations_participant_is_403(room):
    other = create(nickname="mallory")
    for r in (
        get(url(room), other["token"]),
        get(url(room, "/messages"), other["token"]),
        post(url(room, "/messages"), {"text": "intrusion"}, other["token"]),
        post(url(room, "/leave"), {}, other["token"]),
    ):
        error(r, 403, "not_participant")
    assert not Message.objects.filter(conversation_id=room["conversation"]["id"], text="intrusion").exists()


@pytest.mark.parametrize("conversation_id", [str(uuid.uuid4()), "nope"])
def test_unknown_conversation_is_404_even_with_a_valid_token(room, conversation_id):
    for r in (
        get(f"/api/conversations/{conversation_id}", room["token"]),
        get(f"/api/conversations/{conversation_id}/messages", room["token"]),
        post(f"/api/conversations/{conversation_id}/messages", {"text": "x"}, room["token"]),
    ):
        error(r, 404, "not_found")


def test_a_banned_participant_is_403(room):
    bob = join(room["conversation"]["id"], "bob").json()
    Participant.objects.filter(pk=bob["participant"]["id"]).update(banned=True)
    error(get(url(room, "/messages"), bob["token"]), 403, "banned")


def test_the_browser_that_created_a_conversation_is_recognised_by_its_session():
    browser = Client()
    body = create(browser, nickname="alice")
    r = browser.get(f"/api/conversations/{body['conversation']['id']}")
    assert r.status_code == 200 and r.json()["participant"]["id"] == body["participant"]["id"]
    error(Client().get(f"/api/conversations/{body['conversation']['id']}"), 401, "unauthenticated")


# ---- leave ----------------------------------------------------------------------------------


def test_leave(room):
    bob = join(room["conversation"]["id"], "bob").json()
    r = post(url(room, "/leave"), {}, bob["token"])
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert post(url(room, "/leave"), {}, bob["token"]).status_code == 200  # idempotent
    events = [(m["data"]["event"], m["data"]["participant"]["name"]) for m in messages(room)]
    assert events[-2:] == [("joined", "bob"), ("left", "bob")]  # one "left", not two
    error(post(url(room, "/messages"), {"text": "still here?"}, bob["token"]), 403, "left")


# ---- messages -------------------------------------------------------------------------------


def messages(room: dict, query: str = "") -> list[dict]:
    r = get(url(room, f"/messages{query}"), room["token"])
    assert r.status_code == 200
    return r.json()["messages"]


def test_post_and_read_a_message(room):
    r = post(url(room, "/messages"), {"text": "hello", "client_id": "c1"}, room["token"])
    assert r.status_code == 201
    sent = r.json()
    assert set(sent) == MESSAGE_KEYS
    assert (sent["seq"], sent["text"], sent["kind"], sent["client_id"]) == (4, "hello", "text", "c1")
    assert sent["sender"] == {"id": room["participant"]["id"], "name": "alice", "kind": "human"}
    history = messages(room)
    assert [m["seq"] for m in history] == [1, 2, 3, 4]
    assert history[-1] == sent
    assert all(set(m) == MESSAGE_KEYS for m in history)
    assert history[0]["sender"] is None and history[0]["kind"] == "system"


def test_resending_a_client_id_answers_200_with_the_stored_message(room):
    first = post(url(room, "/messages"), {"text": "once", "client_id": "c1"}, room["token"])
    again = post(url(room, "/messages"), {"text": "once", "client_id": "c1"}, room["token"])
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Message.objects.filter(sender_id=room["participant"]["id"]).count() == 1


def test_history_paging_over_http(room):
    for i in range(7):
        post(url(room, "/messages"), {"text": f"m{i}"}, room["token"])  # seqs 4..10
    r = get(url(room, "/messages?limit=3"), room["token"]).json()
    assert ([m["seq"] for m in r["messages"]], r["has_more"]) == ([8, 9, 10], True)
    r = get(url(room, "/messages?before_seq=8&limit=3"), room["token"]).json()
    assert ([m["seq"] for m in r["messages"]], r["has_more"]) == ([5, 6, 7], True)
    r = get(url(room, "/messages?after_seq=7&limit=5"), room["token"]).json()
    assert ([m["seq"] for m in r["messages"]], r["has_more"]) == ([8, 9, 10], False)
    r = get(url(room, "/messages?after_seq=99999999999999999999999"), room["token"]).json()
    assert r == {"messages": [], "has_more": False}


def test_posting_errors(room):
    error(post(url(room, "/messages"), {"text": "  "}, room["token"]), 400, "empty_message")
    error(post(url(room, "/messages"), {"text": "x", "kind": "system"}, room["token"]), 400, "invalid_kind")
    error(post(url(room, "/messages"), {"text": "x", "quoted_message_id": "zz"}, room["token"]), 400, "invalid_quote")
    Chat.get_chat(room["conversation"]["id"]).end()
    error(post(url(room, "/messages"), {"text": "late"}, room["token"]), 409, "conversation_ended")


# ---- malformed requests: always a JSON 4xx, never a 500 or an HTML page ---------------------

BAD_BODIES = ["{not json", "[]", '"text"', "null", "\xff\xfe", '{"text": "unterminated']


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("target", ["create", "join", "message"])
def test_malformed_json_body_is_a_clear_400(room, body, target):
    path = {"create": "/api/conversations", "join": url(room, "/join"), "message": url(room, "/messages")}[target]
    before = (Conversation.objects.count(), Participant.objects.count(), Message.objects.count())
    r = Client().post(path, body, content_type="application/json", **bearer(room["token"]))
    error(r, 400, "bad_json")
    assert (Conversation.objects.count(), Participant.objects.count(), Message.objects.count()) == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/conversations", {"bots": "echo"}, "bots"),
        ("/api/conversations", {"name": 5}, "name"),
        ("/messages", {"text": 5}, "text"),
        ("/messages", {"attachments": "x"}, "attachments"),
        ("/messages", {"data": []}, "data"),
    ],
)
def test_wrong_field_types_name_the_field(room, path, body, field):
    target = path if path.startswith("/api") else url(room, path)
    assert field in error(post(target, body, room["token"]), 400, "invalid")


@pytest.mark.parametrize("query", ["limit=abc", "after_seq=x", "before_seq=1.5"])
def test_bad_query_parameters_are_a_clear_400(room, query):
    assert query.split("=")[0] in error(get(url(room, f"/messages?{query}"), room["token"]), 400, "invalid")


# ---- uploads: judged by content, signed download URLs ---------------------------------------


def send(room: dict, name: str, data: bytes, content_type: str = "application/octet-stream", token=None, **form):
    file = SimpleUploadedFile(name, data, content_type=content_type)
    return Client().post(url(room, "/attachments"), {"file": file, **form}, **bearer(token or room["token"]))


def test_a_png_named_txt_is_an_image(room):
    r = send(room, "notes.txt", payload(PNG, 300), content_type="text/plain")
    assert r.status_code == 201
    attachment = r.json()["attachment"]
    assert (attachment["kind"], attachment["mime"], attachment["name"], attachment["size"]) == (
        "image",
        "image/png",
        "notes.txt",
        300,
    )


def test_a_text_file_named_png_is_not_an_image(room):
    r = send(room, "cat.png", TEXT, content_type="image/png")
    attachment = r.json()["attachment"]
    assert (attachment["kind"], attachment["mime"]) == ("file", "application/octet-stream")


def test_a_video_is_a_video_whatever_its_name(room):
    assert send(room, "song.mp3", payload(MP4, 500)).json()["attachment"]["kind"] == "video"


def test_a_voice_note_must_be_audio(room):
    error(send(room, "voice.ogg", payload(PNG, 100), kind="voice"), 415, "unsupported_media")


def test_the_stored_name_is_cleaned_and_the_storage_name_is_random(room):
    r = send(room, "../../etc/pass wd;rm.txt", TEXT)
    attachment = Attachment.objects.get(pk=r.json()["attachment"]["id"])
    assert attachment.name == "pass wd_rm.txt"
    assert "pass" not in attachment.file.name and ".." not in attachment.file.name


def test_upload_needs_a_participant_of_the_conversation(room):
    other = create(nickname="mallory")
    error(send(room, "a.txt", TEXT, token=other["token"]), 403, "not_participant")
    file = SimpleUploadedFile("a.txt", TEXT)
    error(Client().post(url(room, "/attachments"), {"file": file}), 401, "unauthenticated")
    assert error(Client().post(url(room, "/attachments"), {}, **bearer(room["token"])), 400, "invalid")
    assert not Attachment.objects.exists()


def test_upload_to_an_ended_conversation_is_409(room):
    Chat.get_chat(room["conversation"]["id"]).end()
    error(send(room, "a.txt", TEXT), 409, "conversation_ended")


def test_attach_an_upload_to_a_message_and_download_it(room):
    data = payload(PNG, 400)
    attachment = send(room, "cat.bin", data).json()["attachment"]
    r = post(url(room, "/messages"), {"text": "look", "attachments": [attachment["id"]]}, room["token"])
    assert r.status_code == 201
    message = r.json()
    assert message["kind"] == "image" and message["attachments"] == [attachment]

    download = Client().get(attachment["url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == data
    assert download["Content-Type"] == "image/png"
    assert download["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in download["Content-Security-Policy"]


def test_a_plain_file_downloads_as_an_attachment(room):
    attachment = send(room, "page.html", b"<html><script>alert(1)</script></html>").json()["attachment"]
    download = Client().get(attachment["url"])
    assert download.status_code == 200 and download["X-Content-Type-Options"] == "nosniff"
    assert download["Content-Type"] == "application/octet-stream"
    assert download["Content-Disposition"].startswith("attachment")


def test_a_tampered_download_url_is_refused(room):
    first = send(room, "a.txt", TEXT).json()["attachment"]
    second = send(room, "b.txt", TEXT).json()["attachment"]
    _, files, first_id, signature, _ = first["url"].split("/")
    second_signature = second["url"].split("/")[3]
    tampered = [
        f"/{files}/{first_id}/{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}/",
        f"/{files}/{first_id}/{second_signature}/",  # a valid signature, of another file
        f"/{files}/{second['id']}/{signature}/",
        f"/{files}/{uuid.uuid4()}/{signature}/",
    ]
    for path in tampered:
        assert Client().get(path).status_code in (403, 404), path
    assert Client().get(first["url"]).status_code == 200


# ---- meta: bots, schema ---------------------------------------------------------------------


def test_bots_lists_the_installed_bots(settings):
    settings.CHAT_INSTALLED_BOTS = {
        "echo": {"class": "bots.builtin.echo.EchoBot", "description": "Repeats what you say.", "trigger": "all"},
        "helper": {
            "url": "http://127.0.0.1:9/hook",
            "description": "Helps.",
            "trigger": "mention",
            "kind": "webhook",
        },
    }
    r = Client().get("/api/bots")
    assert r.status_code == 200
    assert r.json() == {
        "bots": [
            {"name": "echo", "description": "Repeats what you say.", "kind": "python", "trigger": "all"},
            {"name": "helper", "description": "Helps.", "kind": "webhook", "trigger": "mention"},
        ]
    }


def test_the_default_install_has_the_echo_bot():
    assert "echo" in {b["name"] for b in Client().get("/api/bots").json()["bots"]}


def test_openapi_schema():
    r = Client().get("/api/schema")
    assert r.status_code == 200
    schema = json.loads(r.content)
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/conversations",
        "/api/conversations/{conversation_id}",
        "/api/conversations/{conversation_id}/join",
        "/api/conversations/{conversation_id}/leave",
        "/api/conversations/{conversation_id}/messages",
        "/api/conversations/{conversation_id}/attachments",
        "/api/limits",
        "/api/bots",
    } <= set(schema["paths"])
    create_op = schema["paths"]["/api/conversations"]["post"]
    assert {"201", "400"} <= set(create_op["responses"])


def test_an_unknown_api_path_answers_json():
    r = Client().get("/api/no-such-thing")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "detail": "no such endpoint"}}
    assert Client().get("/no-such-page/").status_code == 404
