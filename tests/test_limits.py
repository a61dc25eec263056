"""ChatLimits: defaults, overrides from settings, and their enforcement on upload and over HTTP."""

from __future__ import annotations

import typing

import pytest
from django.test import Client

from conversations.limits import DEFAULT_LIMITS, SIZE_LIMIT_BY_KIND, ChatLimits, get_limits, max_upload_size
from tests.foundation_helpers import MP4, OGG, PNG, TEXT, bearer, payload

SIZE_KEYS = {"MAX_ATTACHMENT_SIZE", "MAX_IMAGE_SIZE", "MAX_VIDEO_SIZE", "MAX_AUDIO_SIZE", "MAX_VOICE_SIZE"}


# ---- values ---------------------------------------------------------------------------------


def test_chat_limits_declares_every_default():
    keys = set(typing.get_type_hints(ChatLimits))
    assert keys == set(DEFAULT_LIMITS)
    assert SIZE_KEYS | {"MAX_TEXT_LENGTH", "MAX_PARTICIPANTS", "RATE_LIMIT_MESSAGES", "RATE_LIMIT_WINDOW"} <= keys
    assert set(SIZE_LIMIT_BY_KIND.values()) == SIZE_KEYS
    assert all(isinstance(v, int) and v > 0 for v in DEFAULT_LIMITS.values())


def test_defaults_apply_without_overrides(settings):
    settings.CHAT_LIMITS = {}
    assert get_limits() == DEFAULT_LIMITS


def test_settings_override_one_limit_and_keep_the_rest(settings):
    settings.CHAT_LIMITS = {"MAX_IMAGE_SIZE": 1234, "MAX_TEXT_LENGTH": "20"}  # env JSON may give strings
    limits = get_limits()
    assert limits["MAX_IMAGE_SIZE"] == 1234 and limits["MAX_TEXT_LENGTH"] == 20
    assert limits["MAX_VIDEO_SIZE"] == DEFAULT_LIMITS["MAX_VIDEO_SIZE"]
    assert DEFAULT_LIMITS["MAX_IMAGE_SIZE"] != 1234  # the defaults themselves are untouched


def test_unknown_override_is_refused(settings):
    settings.CHAT_LIMITS = {"MAX_IMAGE_SIZ": 1}
    with pytest.raises(ValueError, match="MAX_IMAGE_SIZ"):
        get_limits()


def test_max_upload_size_is_the_largest_kind_limit(settings):
    settings.CHAT_LIMITS = {"MAX_AUDIO_SIZE": 999 * 1024 * 1024}
    assert max_upload_size(get_limits()) == 999 * 1024 * 1024
    assert max_upload_size(DEFAULT_LIMITS) == DEFAULT_LIMITS["MAX_VIDEO_SIZE"]


@pytest.mark.django_db
def test_get_limits_endpoint_shows_the_limits_in_force(client, settings):
    settings.CHAT_LIMITS = {}
    assert client.get("/api/limits").json() == DEFAULT_LIMITS
    settings.CHAT_LIMITS = {"MAX_TEXT_LENGTH": 77}
    r = client.get("/api/limits")
    assert r.status_code == 200 and r.json()["MAX_TEXT_LENGTH"] == 77
    assert r.json()["MAX_IMAGE_SIZE"] == DEFAULT_LIMITS["MAX_IMAGE_SIZE"]


# ---- per-kind size limits on upload ----------------------------------------------------------

SMALL = {
    "MAX_ATTACHMENT_SIZE": 4000,
    "MAX_IMAGE_SIZE": 1000,
    "MAX_VIDEO_SIZE": 5000,
    "MAX_AUDIO_SIZE": 3000,
    "MAX_VOICE_SIZE": 2000,
}


@pytest.fixture
def room(db, settings):
    """A conversation under small size limits: (client, conversation id, owner token)."""
    settings.CHAT_LIMITS = SMALL
    client = Client()
    body = client.post("/api/conversations", {"nickname": "alice"}, content_type="application/json").json()
    return client, body["conversation"]["id"], body["token"]


def send_file(room, name: str, data: bytes, kind: str = ""):
    client, conversation_id, token = room
    from django.core.files.uploadedfile import SimpleUploadedFile

    form = {"file": SimpleUploadedFile(name, data, content_type="application/octet-stream")}
    if kind:
        form["kind"] = kind
    return client.post(f"/api/conversations/{conversation_id}/attachments", form, **bearer(token))


CASES = [  # (kind judged from content, first bytes, limit key, form kind)
    ("image", PNG, "MAX_IMAGE_SIZE", ""),
    ("video", MP4, "MAX_VIDEO_SIZE", ""),
    ("audio", OGG, "MAX_AUDIO_SIZE", ""),
    ("voice", OGG, "MAX_VOICE_SIZE", "voice"),
    ("file", TEXT, "MAX_ATTACHMENT_SIZE", ""),
]


@pytest.mark.parametrize(("kind", "head", "key", "form_kind"), CASES)
def test_each_kind_is_accepted_up_to_its_own_limit(room, kind, head, key, form_kind):
    limit = SMALL[key]
    r = send_file(room, "upload.bin", payload(head, limit), form_kind)
    assert r.status_code == 201, r.content
    attachment = r.json()["attachment"]
    assert (attachment["kind"], attachment["size"]) == (kind, limit)


@pytest.mark.parametrize(("kind", "head", "key", "form_kind"), CASES)
def test_each_kind_over_its_own_limit_is_413(room, kind, head, key, form_kind):
    limit = SMALL[key]
    r = send_file(room, "upload.bin", payload(head, limit + 1), form_kind)
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["code"] == "too_large"
    assert str(limit) in error["detail"]
    # the biggest kind is refused by the overall ceiling, before its content is judged
    assert kind in error["detail"] or limit == max(SMALL.values())


def test_a_file_bigger_than_every_kind_is_refused_before_sniffing(room):
    r = send_file(room, "huge.png", payload(PNG, max(SMALL.values()) + 1))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert str(max(SMALL.values())) in r.json()["error"]["detail"]


def test_a_large_picture_is_judged_by_the_image_limit_not_the_file_limit(room):
    """2000 bytes fit MAX_ATTACHMENT_SIZE (4000) but not MAX_IMAGE_SIZE (1000): the content
    says image, so the image limit applies whatever the name says."""
    assert send_file(room, "notes.txt", payload(PNG, 2000)).status_code == 413
    assert send_file(room, "notes.txt", payload(TEXT, 2000)).status_code == 201


# ---- text, rate and participants over HTTP --------------------------------------------------


def post(room, body):
    client, conversation_id, token = room
    return client.post(
        f"/api/conversations/{conversation_id}/messages", body, content_type="application/json", **bearer(token)
    )


def test_text_length_limit_over_http(room, settings):
    settings.CHAT_LIMITS = {"MAX_TEXT_LENGTH": 5}
    assert post(room, {"text": "12345"}).status_code == 201
    r = post(room, {"text": "123456"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "text_too_long"


def test_rate_limit_over_http(room, settings):
    settings.CHAT_LIMITS = {"RATE_LIMIT_MESSAGES": 2, "RATE_LIMIT_WINDOW": 60}
    assert [post(room, {"text": f"m{i}"}).status_code for i in range(2)] == [201, 201]
    r = post(room, {"text": "m3"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"


def test_participants_limit_over_http(room, settings):
    settings.CHAT_LIMITS = {"MAX_PARTICIPANTS": 2}
    _client, conversation_id, _ = room
    join = f"/api/conversations/{conversation_id}/join"
    assert Client().post(join, {"nickname": "bob"}, content_type="application/json").status_code == 201
    r = Client().post(join, {"nickname": "carol"}, content_type="application/json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conversation_full"
