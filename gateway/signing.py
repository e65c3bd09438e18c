"""Short-lived signed media URLs: ``PATH?exp=<unix seconds>&sig=<base64url HMAC-SHA256>``.

The HMAC covers the path and the expiry, so a signature opens one file until it expires and
nothing else. The secret is ``LIVECUT_SIGNING_KEY`` (set the same on every gateway behind one
address) or one generated once into ``<data dir>/signing_key`` (0600). Notifications keep
unsigned paths; the gateway signs them each time it hands them out, so a replayed
notification carries a fresh signature and an old copied link stops working.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec

SECRET_ENV = "LIVECUT_SIGNING_KEY"
SECRET_FILE = "signing_key"
URL_FIELDS = ("video_url", "thumbnail_url", "captions_url")


def load_secret(data_dir: str) -> bytes:
    """The env var's secret, else the data dir's (created on first use, readable by us only)."""
    if value := os.environ.get(SECRET_ENV):
        return value.encode("utf-8")
    path = Path(data_dir, SECRET_FILE)
    try:
        return path.read_text().strip().encode("utf-8")
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:  # O_EXCL: two gateways starting at once keep one secret
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode("utf-8")
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value.encode("utf-8")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class UrlSigner:
    def __init__(self, secret: bytes, ttl: float = 3600.0):
        if not secret:
            raise ValueError("the signing secret must not be empty")
        self.secret = secret
        self.ttl = ttl

    def signature(self, path: str, exp: int) -> str:
        return _b64(hmac.new(self.secret, f"{path}\n{exp}".encode("utf-8"), hashlib.sha256).digest())

    def sign(self, url: str, now: float | None = None) -> str:
        """``url`` (a path, or an absolute URL whose path is signed) with ``exp`` and ``sig``."""
        parts = urlsplit(url)
        exp = int((time.time() if now is None else now) + self.ttl)
        query = f"exp={exp}&sig={self.signature(parts.path, exp)}"
        return urlunsplit(parts._replace(query=query))

    def verify(self, path: str, exp: str | None, sig: str | None, now: float | None = None) -> bool:
        """True for an unexpired signature of ``path``; constant time over the signature."""
        if not exp or not sig or not exp.isdigit() or len(exp) > 12:
            return False
        expected = self.signature(path, int(exp))
        if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8", "replace")):
            return False
        return int(exp) >= (time.time() if now is None else now)

    def sign_notification(self, payload: dict) -> dict:
        """A clip notification (as builtins) with its media URLs signed."""
        signed = dict(payload)
        for name in URL_FIELDS:
            if isinstance(signed.get(name), str) and signed[name]:
                signed[name] = self.sign(signed[name])
        return signed

    def signed_clip(self, clip) -> dict:
        """A stored clip (``records.wire.ClipRecord``) as its notification, media URLs signed."""
        return self.sign_notification(msgspec.to_builtins(clip.notification()))
