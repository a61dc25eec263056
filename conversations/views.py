"""Plain Django views of the chat domain (the JSON API lives in api.py)."""

from __future__ import annotations

from django.core import signing
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found

from .models import Attachment
from .protocol import ATTACHMENT_SALT

# Served inline only when a browser can show them without running anything of theirs.
INLINE_KINDS = {"image", "audio", "video", "voice"}


def download_attachment(request: HttpRequest, attachment_id, signature: str) -> FileResponse:
    """Serve an attachment by its capability URL (signature over its id, given to participants)."""
    if not _valid(str(attachment_id), signature):
        raise Http404("no such attachment")
    attachment = Attachment.objects.filter(pk=attachment_id).first()
    if attachment is None:
        raise Http404("no such attachment")
    response = FileResponse(
        attachment.file.open("rb"),
        content_type=attachment.mime,
        as_attachment=attachment.kind not in INLINE_KINDS or attachment.mime == "image/svg+xml",
        filename=attachment.name,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _valid(value: str, signature: str) -> bool:
    signer = signing.Signer(salt=ATTACHMENT_SALT)
    try:
        signer.unsign(f"{value}{signer.sep}{signature}")
    except signing.BadSignature:
        return False
    return True


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for any path: API clients get the API's JSON error shape, browsers Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "not_found", "detail": "no such endpoint"}}, status=404)
    return page_not_found(request, exception)
