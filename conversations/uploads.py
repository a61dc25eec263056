"""Storing uploads: size limits per kind, kind judged from the bytes, a random storage name."""

from __future__ import annotations

import os
import re

from django.core.files.uploadedfile import UploadedFile

from .chat import Chat
from .errors import ConversationEnded, TooLarge, UnsupportedMedia
from .limits import SIZE_LIMIT_BY_KIND, max_upload_size
from .models import Attachment, Participant
from .sniff import VOICE_MIMES, sniff

SNIFF_BYTES = 8192
_UNSAFE_NAME = re.compile(r"[^\w.\- ()\[\]]+", re.UNICODE)


def clean_filename(name: str) -> str:
    """Keep a readable original name as metadata; paths and odd characters removed."""
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    return (_UNSAFE_NAME.sub("_", base) or "file")[:255]


def store_upload(chat: Chat, participant: Participant, upload: UploadedFile, *, voice: bool = False) -> Attachment:
    """Check and store one uploaded file for ``participant``; refusals are typed errors."""
    chat._check_can_send(chat._refresh_participant(participant))
    if not chat.conversation.is_open:
        raise ConversationEnded("this conversation has ended")
    limits = chat.limits
    size = upload.size or 0
    ceiling = max_upload_size(limits)
    if size > ceiling:
        raise TooLarge(f"the file is {size} bytes; no kind of file may exceed {ceiling} bytes")
    upload.seek(0)
    head = upload.read(SNIFF_BYTES)
    upload.seek(0)
    mime, kind = sniff(head)
    if voice:
        if kind not in ("audio", "video") or (kind == "video" and mime not in VOICE_MIMES):
            raise UnsupportedMedia(f"a voice note must be audio; this file is {mime}")
        kind = "voice"
    limit = limits[SIZE_LIMIT_BY_KIND[kind]]
    if size > limit:
        raise TooLarge(f"the {kind} is {size} bytes; the limit for {kind} files is {limit} bytes")
    attachment = Attachment(
        conversation=chat.conversation,
        uploader=participant,
        name=clean_filename(upload.name),
        size=size,
        mime=mime,
        kind=kind,
    )
    attachment.file.save(attachment.name, upload, save=False)
    attachment.save(force_insert=True)
    return attachment
