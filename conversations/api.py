"""The HTTP API (JSON). Thin: authenticate, call ``Chat``, serialise with ``protocol``.

Errors are always ``{"error": {"code", "detail"}}`` with the matching status. The OpenAPI
schema is served at ``/api/schema`` and browsable at ``/api/docs``.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest
from ninja import File, Form, NinjaAPI, Schema, Status, UploadedFile
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser

from . import bot_directory, protocol
from .auth import authorize, bearer_token, remember_in_session
from .chat import Chat
from .errors import ChatError, NotFound
from .limits import get_limits
from .uploads import store_upload


class JSONObjectParser(Parser):
    """A JSON body must be an object: an array, a string or null would otherwise quietly
    become the schema's defaults (e.g. create a conversation from ``[]``)."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = super().parse_body(request)
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data


api = NinjaAPI(
    title="chatroom",
    version="1",
    description="Conversations where humans and bots talk. See docs/protocol.md for the WebSocket side.",
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/schema",
    parser=JSONObjectParser(),
)


# ---- errors ---------------------------------------------------------------------------------


def _error(request: HttpRequest, status: int, code: str, detail: Any):
    return api.create_response(request, {"error": {"code": code, "detail": detail}}, status=status)


@api.exception_handler(ChatError)
def _chat_error(request, exc: ChatError):
    return _error(request, exc.status, exc.code, exc.detail)


@api.exception_handler(NinjaValidationError)
def _validation_error(request, exc: NinjaValidationError):
    problems = [
        {"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "message": e.get("msg", "")} for e in exc.errors
    ]
    detail = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems) or "invalid request"
    return _error(request, 400, "invalid", detail)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _error(request, 404, "not_found", "not found")


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return _error(request, 401, "unauthenticated", "send Authorization: Bearer <token>")


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):  # ninja's body parse failure
        return _error(request, 400, "bad_json", "the request body must be one JSON object")
    return _error(request, exc.status_code, "error", str(exc))


# ---- schemas (for validation and the OpenAPI document) --------------------------------------


class ErrorBody(Schema):
    code: str
    detail: Any


class ErrorOut(Schema):
    error: ErrorBody


class CreateIn(Schema):
    name: str = ""
    nickname: str = ""
    bots: list[str] = []


class MessageIn(Schema):
    client_id: str | None = None
    text: str = ""
    kind: str | None = None
    data: dict = {}
    attachments: list[str] = []
    quoted_message_id: str | None = None


class JoinIn(Schema):
    nickname: str = ""


class ConversationOut(Schema):
    id: str
    name: str
    status: str
    created_at: str
    ended_at: str | None
    join_policy: str
    premoderation: str


class ParticipantOut(Schema):
    id: str
    name: str
    kind: str
    role: str
    bot: str | None
    joined_at: str
    left_at: str | None
    muted_until: str | None
    banned: bool
    last_read_seq: int


class SenderOut(Schema):
    id: str
    name: str
    kind: str


class AttachmentOut(Schema):
    id: str
    name: str
    size: int
    mime: str
    kind: str
    url: str


class MessageOut(Schema):
    id: str
    seq: int | None
    conversation_id: str
    sender: SenderOut | None
    kind: str
    text: str
    data: dict
    attachments: list[AttachmentOut]
    quoted_message_id: str | None
    client_id: str | None
    approval: str
    hidden: bool
    created_at: str
    edited_at: str | None


class CreatedOut(Schema):
    conversation: ConversationOut
    participant: ParticipantOut
    token: str
    participants: list[ParticipantOut]


class JoinedOut(Schema):
    participant: ParticipantOut
    token: str


class ConversationDetailOut(Schema):
    conversation: ConversationOut
    participant: ParticipantOut
    participants: list[ParticipantOut]


class MessagesOut(Schema):
    messages: list[MessageOut]
    has_more: bool


class UploadOut(Schema):
    attachment: AttachmentOut


class ReportIn(Schema):
    message_id: str
    reason: str = ""


class ReportOut(Schema):
    id: str
    conversation_id: str
    message_id: str
    reason: str
    status: str
    created_at: str


class BotOut(Schema):
    name: str
    description: str
    kind: str
    trigger: str


class BotsOut(Schema):
    bots: list[BotOut]


ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    413: ErrorOut,
    415: ErrorOut,
    429: ErrorOut,
}


# ---- helpers --------------------------------------------------------------------------------


def _chat_or_404(conversation_id: str) -> Chat:
    chat = Chat.get_chat(conversation_id)
    if chat is None:
        raise NotFound("no such conversation")
    return chat


def _participant(request: HttpRequest, chat: Chat):
    return authorize(chat.conversation, bearer_token(request.headers), getattr(request, "session", None))


# ---- endpoints ------------------------------------------------------------------------------


@api.post("/conversations", response={201: CreatedOut, **ERRORS}, tags=["conversations"])
def create_conversation(request: HttpRequest, body: CreateIn):
    """Create a conversation; the creator becomes its owner. Keep the token: it is shown once."""
    user = request.user if request.user.is_authenticated else None
    chat, participants = Chat.create(body.name, body.nickname, body.bots, user=user)
    me = participants[0]
    remember_in_session(request.session, me)
    return Status(
        201,
        {
            "conversation": protocol.conversation_to_dict(chat.conversation),
            "participant": protocol.participant_to_dict(me),
            "token": me.token,
            "participants": [protocol.participant_to_dict(p) for p in participants],
        },
    )


@api.post("/conversations/{conversation_id}/join", response={201: JoinedOut, **ERRORS}, tags=["conversations"])
def join_conversation(request: HttpRequest, conversation_id: str, body: JoinIn):
    """Join by link with a nickname (empty: one is generated). The token is shown once."""
    chat = _chat_or_404(conversation_id)
    user = request.user if request.user.is_authenticated else None
    participant = chat.join(body.nickname, user=user, session=request.session)
    remember_in_session(request.session, participant)
    return Status(201, {"participant": protocol.participant_to_dict(participant), "token": participant.token})


@api.get("/conversations/{conversation_id}", response={200: ConversationDetailOut, **ERRORS}, tags=["conversations"])
def get_conversation(request: HttpRequest, conversation_id: str):
    """The conversation, the caller as a participant, and everyone in it."""
    chat = _chat_or_404(conversation_id)
    me = _participant(request, chat)
    return {
        "conversation": protocol.conversation_to_dict(chat.conversation),
        "participant": protocol.participant_to_dict(me),
        "participants": [protocol.participant_to_dict(p) for p in chat.conversation.participants.all()],
    }


@api.post("/conversations/{conversation_id}/leave", response={200: dict, **ERRORS}, tags=["conversations"])
def leave_conversation(request: HttpRequest, conversation_id: str):
    """Leave the conversation (a "left" system message); the token then writes nothing more."""
    chat = _chat_or_404(conversation_id)
    chat.leave(_participant(request, chat))
    return {"ok": True}


@api.post("/conversations/{conversation_id}/end", response={200: dict, **ERRORS}, tags=["conversations"])
def end_conversation(request: HttpRequest, conversation_id: str):
    """End the conversation (owner or moderator): an "ended" message, then read-only for all."""
    chat = _chat_or_404(conversation_id)
    chat.end_conversation(_participant(request, chat))  # checks the role; writes the audit row
    return {"ok": True}


@api.get("/conversations/{conversation_id}/messages", response={200: MessagesOut, **ERRORS}, tags=["messages"])
def list_messages(
    request: HttpRequest,
    conversation_id: str,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int = 50,
):
    """Messages in seq order. ``after_seq``: the oldest after it (catching up); otherwise the
    newest before ``before_seq`` (scroll-back). ``limit`` 1..500."""
    chat = _chat_or_404(conversation_id)
    _participant(request, chat)
    messages, has_more = chat.history(after_seq=after_seq, before_seq=before_seq, limit=limit)
    return {"messages": [protocol.message_to_dict(m) for m in messages], "has_more": has_more}


@api.post(
    "/conversations/{conversation_id}/messages",
    response={201: MessageOut, 200: MessageOut, **ERRORS},
    tags=["messages"],
)
def post_message(request: HttpRequest, conversation_id: str, body: MessageIn):
    """Send a message over HTTP (same rules as the socket's ``message.send``). A resend with
    the same ``client_id`` answers 200 with the stored message."""
    chat = _chat_or_404(conversation_id)
    message = chat.save_message(_participant(request, chat), body.dict())
    return Status(201 if message.created else 200, protocol.message_to_dict(message))


@api.post("/conversations/{conversation_id}/attachments", response={201: UploadOut, **ERRORS}, tags=["messages"])
def upload_attachment(request: HttpRequest, conversation_id: str, file: File[UploadedFile], kind: Form[str] = ""):
    """Upload a file to attach to a later message. Its kind is judged from its content;
    ``kind=voice`` marks an audio recording as a voice note."""
    chat = _chat_or_404(conversation_id)
    participant = _participant(request, chat)
    attachment = store_upload(chat, participant, file, voice=(kind == "voice"))
    return Status(201, {"attachment": protocol.attachment_to_dict(attachment)})


@api.post(
    "/conversations/{conversation_id}/reports",
    response={201: ReportOut, 200: ReportOut, **ERRORS},
    tags=["moderation"],
)
def report_message(request: HttpRequest, conversation_id: str, body: ReportIn):
    """Report a message to the moderators (see docs/moderation.md). Reporting the same
    message again answers 200 with the first report."""
    chat = _chat_or_404(conversation_id)
    report = chat.report_message(_participant(request, chat), body.message_id, body.reason)
    return Status(201 if report.created else 200, protocol.report_to_dict(report))


@api.get("/limits", tags=["meta"])
def limits(request: HttpRequest) -> dict[str, int]:
    """The ChatLimits in force (sizes in bytes, rate per window in seconds)."""
    return dict(get_limits())


@api.get("/bots", response=BotsOut, tags=["meta"])
def bots(request: HttpRequest):
    """Bots that can be added to a conversation."""
    return {"bots": [dict(info) for info in bot_directory.installed_bots().values()]}
