"""Keeping URL secrets out of logs, and the URL policy's names for the source plugins.

Which URLs a source may open, and where it may connect, is ``records.url_policy`` (one
policy for the API and every source kind); this module re-exports its names
(``UnsafeUrl``, ``UrlPolicy``, ``public_address``, ``network_url``) for the plugins.

Secrets: URLs can carry credentials (``user:pass@``) and tokens in the query string.
``redact_url`` and ``redact_text`` (every URL inside a text) are what logs and status
texts use: the shared ``redact.py`` (password and secret-looking parameter values
masked), or, should it fail to import, scheme + host + path only.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from records.url_policy import ALLOW_HINT, WRAPPER_SCHEMES, UnsafeUrl, UrlPolicy, network_url, public_address

__all__ = [
    "ALLOW_HINT",
    "UnsafeUrl",
    "UrlPolicy",
    "network_url",
    "public_address",
    "redact_url",
    "redact_text",
    "display_url",
]

log = logging.getLogger(__name__)

# -- redaction -------------------------------------------------------------------------

try:  # the shared helpers (stream_actor/sources/redact.py)
    from .redact import redact_text as _shared_redact_text
    from .redact import redact_url as _shared_redact
except Exception:  # noqa: BLE001 - absent or broken: scheme + host + path only
    _shared_redact = _shared_redact_text = None


def _scheme_host_path(url: str) -> str:
    """``scheme://host[:port]/path``: no credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    if not parts.scheme and not parts.netloc:  # a path, or a scheme-less site URL
        return url.split("?", 1)[0].split("#", 1)[0]
    if ":" in host:
        host = f"[{host}]"
    path = parts.path
    if parts.scheme.lower() in WRAPPER_SCHEMES and "://" in url[len(parts.scheme) + 3:]:
        inner = url[len(parts.scheme) + 3:]
        return f"{parts.scheme}://{_scheme_host_path(inner)}"
    return f"{parts.scheme}://{host}{port}{path}"


def redact_url(url: str) -> str:
    """``url`` without its secrets, for logs and status texts."""
    if _shared_redact is not None:
        try:
            return _shared_redact(url)
        except Exception:  # noqa: BLE001
            pass
    return _scheme_host_path(url)


display_url = redact_url

_URL_IN_TEXT = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'"<>()\[\]{}]+""")


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (error messages quote URLs)."""
    if _shared_redact_text is not None:
        try:
            return _shared_redact_text(text)
        except Exception:  # noqa: BLE001
            pass
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
