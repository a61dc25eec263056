import pytest


@pytest.mark.django_db
def test_create_then_read_history(client):
    r = client.post(
        "/api/conversations", {"name": "t", "nickname": "alice", "bots": ["echo"]}, content_type="application/json"
    )
    assert r.status_code == 201
    body = r.json()
    r = client.get(
        f"/api/conversations/{body['conversation']['id']}/messages", HTTP_AUTHORIZATION=f"Bearer {body['token']}"
    )
    assert [m["data"]["event"] for m in r.json()["messages"]] == ["created", "joined", "joined"]
