"""Small helpers shared by the foundation tests (models, Chat, limits, API, seq concurrency)."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

# First bytes of real files of each kind, padded; the sniffer judges by these alone.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
OGG = b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00"
TEXT = b"just some plain text, nothing to see here\n"


def payload(head: bytes, size: int) -> bytes:
    """``head`` padded with zero bytes to exactly ``size`` bytes."""
    assert size >= len(head)
    return head + b"\x00" * (size - len(head))


def upload(name: str, head: bytes, size: int | None = None, content_type: str = "application/octet-stream"):
    """An uploaded file as Django hands it to a view."""
    data = payload(head, size) if size is not None else head
    return SimpleUploadedFile(name, data, content_type=content_type)


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
