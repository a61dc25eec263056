"""Typed refusals of the chat domain.

Every refusal carries a machine-readable ``code`` (used verbatim in HTTP error bodies and
WebSocket ``error`` frames), a human ``detail`` and the HTTP status it maps to.
"""

from __future__ import annotations


class ChatError(Exception):
    code = "error"
    status = 400

    def __init__(self, detail: str = "", *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code.replace("_", " ")
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


class InvalidInput(ChatError):
    code = "invalid"
    status = 400


class NotFound(ChatError):
    code = "not_found"
    status = 404


class Unauthenticated(ChatError):
    code = "unauthenticated"
    status = 401


class Forbidden(ChatError):
    code = "forbidden"
    status = 403


class NotParticipant(Forbidden):
    code = "not_participant"


class Banned(Forbidden):
    code = "banned"


class Muted(Forbidden):
    code = "muted"

    def __init__(self, detail: str = "", *, until=None, **kwargs) -> None:
        super().__init__(detail, **kwargs)
        self.until = until  # when the mute ends; error frames carry it as "until"


class ConversationEnded(ChatError):
    code = "conversation_ended"
    status = 409


class ConversationFull(ChatError):
    code = "conversation_full"
    status = 409


class TooLarge(ChatError):
    code = "too_large"
    status = 413


class TextTooLong(ChatError):
    code = "text_too_long"
    status = 413


class RateLimited(ChatError):
    code = "rate_limited"
    status = 429


class UnsupportedMedia(ChatError):
    code = "unsupported_media"
    status = 415


class UnknownBot(ChatError):
    code = "unknown_bot"
    status = 400
