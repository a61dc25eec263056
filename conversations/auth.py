"""Who is speaking: a participant token (``Authorization: Bearer`` or ``?token=``) or the
browser session that created or joined the conversation. Shared by HTTP views and sockets."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.http.cookie import parse_cookie

from . import socket_reads
from .errors import Banned, NotParticipant, Unauthenticated
from .models import Conversation, Participant
from .tokens import participant_id_from_token, token_matches

SESSION_KEY = "chat_participants"  # {conversation id: participant id}


def participant_from_token(token: str) -> Participant | None:
    """The participant a token belongs to, with its conversation, or None (unknown or wrong
    secret)."""
    pid = participant_id_from_token(token.strip()) if token else None
    if pid is None:
        return None
    participant = socket_reads.participant(pid)
    if participant is None or not token_matches(token.strip(), participant.token_hash):
        return None
    return participant


def participant_of_session(session: SessionBase, conversation_id: str) -> Participant | None:
    """The participant of this conversation that a browser session created or joined as,
    with its conversation, or None."""
    pid = (session.get(SESSION_KEY) or {}).get(conversation_id)
    participant = socket_reads.participant(pid) if pid else None
    if participant is None or str(participant.conversation_id) != conversation_id:
        return None
    return participant


def socket_participant(conversation_id: str, token: str, session: SessionBase | None = None) -> Participant | None:
    """A socket's handshake in its common case, one statement (after the session's own read):
    a valid token, or else the browser's session, of a participant of this conversation who
    has not left and is not banned, with its conversation. None for anything else; the caller
    then takes the way that names the error (``authorize``)."""
    if token:
        participant = participant_from_token(token)
    else:
        participant = participant_of_session(session, conversation_id) if session is not None else None
    if participant is None or str(participant.conversation_id) != conversation_id or not participant.is_active:
        return None
    return participant


def bearer_token(headers: Mapping[str, str]) -> str:
    scheme, _, token = (headers.get("Authorization") or headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authorize(conversation: Conversation, token: str, session=None) -> Participant:
    """The participant of ``conversation`` behind a token (or the session), else a typed error:
    401 without a valid token, 403 for another conversation's token or a banned participant."""
    participant = None
    if token:
        participant = participant_from_token(token)
        if participant is None:
            raise Unauthenticated("invalid token")
    elif session is not None:
        participant = participant_of_session(session, str(conversation.pk))
    if participant is None:
        raise Unauthenticated("send Authorization: Bearer <participant token>")
    if participant.conversation_id != conversation.pk:
        raise NotParticipant("this token belongs to another conversation")
    if participant.banned:
        raise Banned("you are banned from this conversation")
    return participant


def session_of_socket(scope: Mapping) -> SessionBase | None:
    """The browser session a WebSocket handshake's cookie names (read-only; loaded lazily).

    A socket only reads its session, to find the participant it belongs to, so it needs no
    session middleware: Channels' wraps every frame the socket sends and keeps a copy of the
    scope per connection (bench/: CPU per frame, memory per idle socket)."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            key = parse_cookie(value.decode("latin1")).get(settings.SESSION_COOKIE_NAME)
            return import_module(settings.SESSION_ENGINE).SessionStore(session_key=key) if key else None
    return None


def remember_in_session(session, participant: Participant) -> None:
    """Let the browser that created or joined come back as the same participant."""
    if session is None:
        return
    known = dict(session.get(SESSION_KEY) or {})
    known[str(participant.conversation_id)] = str(participant.pk)
    session[SESSION_KEY] = known
