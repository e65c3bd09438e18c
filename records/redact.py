"""Keep credentials out of logs: ``redact_url`` for one URL, ``redact_text`` for any text,
``redact_key`` for a stream key.

Source URLs often carry secrets: ``rtsp://admin:hunter2@10.0.0.7/stream1`` (most IP cameras),
``https://cdn/x.m3u8?token=…`` or signed query strings. Every source logs its URL through
``redact_url``; error messages (PyAV quotes the URL it failed to open, credentials included)
go through ``redact_text``. ``RedactingFilter`` does the same to whole log records, for
loggers whose messages may carry a URL from elsewhere (``install_log_redaction``).

* the password of the userinfo becomes ``***`` (the user name stays: it helps and is
  rarely secret): ``rtsp://user:pass@host/x`` → ``rtsp://user:***@host/x``;
* the value of each secret-looking query or fragment parameter (``token``, ``key``,
  ``password``, ``sig``, ``auth``, AWS/GCS signatures, …) becomes ``***``.

The rest of the URL is kept byte for byte (no re-encoding), and nothing here raises.
"""
from __future__ import annotations

import logging
import re

__all__ = ["redact_url", "redact_text", "redact_key", "RedactingFilter", "install_log_redaction", "MASK"]

MASK = "***"

#: scheme "://" userinfo "@": the userinfo runs to the LAST "@" before the path (FFmpeg's
#: av_url_split reads it that way too, so an unescaped "@" in a password is still hidden).
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#]*)@")
#: A password with an unescaped "/", "?" or "#" ends the authority early (the URL is then
#: broken, but its password must not be logged either): "user:" up to the last "@".
_LOOSE_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^:/?#@]*:.*)@")

#: Parameter names whose values are secrets (matched anywhere in the name, any case).
_SECRET_NAME = re.compile(
    r"token|key|pass|pwd|secret|sig|auth|cred|session|sessid|jwt|ticket|hdnts|policy|"
    r"x-amz-|x-goog-|hash|nonce|^code$|^otp$|^st$|^e$",
    re.I,
)

#: A parameter in a query or fragment: name=value up to "&", ";", "#" (or the end).
_PARAM = re.compile(r"(?P<sep>[?&;#])(?P<name>[^=&;#?]+)=(?P<value>[^&;#]*)")

#: A URL inside free text (an error message, a log line).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s]+")
_TRAILING = "'\")]}>,;."


def redact_url(url: str) -> str:
    """``url`` with its password and secret-looking parameter values replaced by ``***``."""
    try:
        if not isinstance(url, str):
            url = str(url)
        out, n = _USERINFO.subn(_mask_userinfo, url, count=1)
        if not n:
            out = _LOOSE_USERINFO.sub(_mask_userinfo, url, count=1)
        return _mask_params(out)
    except Exception:  # never let logging fail; hide everything after the scheme instead
        head, sep, _ = str(url).partition("://")
        return f"{head}{sep}{MASK}" if sep else MASK


def _mask_userinfo(m: re.Match) -> str:
    user, colon, _password = m["userinfo"].partition(":")
    return f"{m['scheme']}{user}{':' + MASK if colon else ''}@"


def _mask_params(url: str) -> str:
    start = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=-1)
    if start < 0:
        return url

    def mask(m: re.Match) -> str:
        if _SECRET_NAME.search(m["name"]) and m["value"]:
            return f"{m['sep']}{m['name']}={MASK}"
        return m.group(0)

    return url[:start] + _PARAM.sub(mask, url[start:])


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (e.g. an exception message quoting a URL)."""
    try:
        text = str(text)
    except Exception:
        return MASK
    if "://" not in text:
        return text

    def one(m: re.Match) -> str:
        url = m.group(0)
        core = url.rstrip(_TRAILING)
        return redact_url(core) + url[len(core):]

    return _URL_IN_TEXT.sub(one, text)


def redact_key(key: str) -> str:
    """A stream key made safe for logs: at most its first 4 characters (never more than half
    of it), then an ellipsis."""
    if not key:
        return "<empty>"
    return key[: min(4, len(key) // 2)] + "…"


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the URLs in a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if "://" in message:
            record.msg, record.args = redact_text(message), ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if "://" in text:
                record.exc_text = redact_text(text)
        elif record.exc_text and "://" in record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


_filter = RedactingFilter()


def install_log_redaction(*logger_names: str) -> None:
    """Attach the redacting filter to these loggers (idempotent). A logger's filters see
    only the records logged on that very logger, so name each one."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
