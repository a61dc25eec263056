"""Participant bearer tokens: ``<participant uuid hex>.<secret>``, stored as a sha256 hash.

The id prefix makes lookup a primary-key fetch; the secret is compared in constant time.
Tokens carry 256 bits of randomness, so a fast hash is enough (no password-style stretching).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(participant_id: uuid.UUID) -> tuple[str, str]:
    """Return (token, token_hash) for a participant."""
    token = f"{participant_id.hex}.{secrets.token_urlsafe(32)}"
    return token, hash_token(token)


def participant_id_from_token(token: str) -> uuid.UUID | None:
    prefix, sep, _ = token.partition(".")
    if not sep:
        return None
    try:
        return uuid.UUID(hex=prefix)
    except ValueError:
        return None


def token_matches(token: str, token_hash: str) -> bool:
    return bool(token_hash) and hmac.compare_digest(hash_token(token), token_hash)
