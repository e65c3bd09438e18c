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
