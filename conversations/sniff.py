"""Judge an upload's kind from its bytes, never from its name or declared type."""

from __future__ import annotations

import filetype

# Voice notes are audio the client marks as voice; these containers are what browsers record.
VOICE_MIMES = {
    "audio/ogg",
    "audio/webm",
    "video/webm",
    "audio/mp4",
    "audio/x-m4a",
    "audio/mpeg",
    "audio/x-wav",
    "audio/wav",
}


def sniff(head: bytes) -> tuple[str, str]:
    """Return (mime, kind) for the first bytes of a file; unknown content is a generic file."""
    guess = filetype.guess(head)
    if guess is None:
        return "application/octet-stream", "file"
    mime = guess.mime
    if mime.startswith("image/"):
        return mime, "image"
    if mime.startswith("audio/"):
        return mime, "audio"
    if mime.startswith("video/"):
        return mime, "video"
    return mime, "file"
