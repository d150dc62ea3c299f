"""Standard Webhooks signatures (https://www.standardwebhooks.com/): HMAC-SHA256 over ``id.timestamp.body``.

Headers: ``webhook-id`` (the same on every retry of a message, so receivers can de-duplicate),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature`` (``v1,<base64>``,
space-separated when several). A ``whsec_``-prefixed secret is base64 after the prefix, as the
standard's libraries expect; any other secret is used as its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from shared.errors import SignatureError

PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


def secret_bytes(secret: str) -> bytes:
    if secret.startswith(PREFIX):
        try:
            return base64.b64decode(secret[len(PREFIX):], validate=True)
        except binascii.Error as exc:
            raise ValueError("a whsec_ webhook secret must be base64 after the prefix") from exc
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def verify(secret: str, received: dict[str, str], body: bytes, now: float | None = None) -> None:
    """What a receiver does; raises SignatureError. Header names are matched case-insensitively."""
    h = {k.lower(): v for k, v in received.items()}
    msg_id, ts, signatures = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        raise SignatureError("webhook-timestamp is too old or too new")
    expected = sign(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, sig) for sig in signatures.split()):
        raise SignatureError("no signature matches")
