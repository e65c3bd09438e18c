"""Why a VOD job failed, as the error code and message its job shows."""
from __future__ import annotations


class VodFailure(Exception):
    """A problem that fails one job (the others go on). ``code`` is part of the public contract:
    ``unreachable`` (the host does not answer, or refuses), ``not_found`` (the URL or upload is
    gone), ``not_media`` (no audio or video FFmpeg can read), ``unsafe_url`` (the URL policy
    refused it, or a redirect of it), ``unsupported`` (a page no extractor resolves),
    ``internal`` (a bug or a lost worker, after the retries)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def first_line(exc: BaseException) -> str:
    """What a job's (or an export's) error says about ``exc``: its message's last line (a Ray
    task error's is the remote exception), at most 500 characters."""
    text = str(exc).strip().splitlines()
    return text[-1][:500] if text else type(exc).__name__
