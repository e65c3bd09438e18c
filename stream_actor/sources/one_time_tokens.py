"""Short-lived, single-use secrets: what an internal listener demands before it takes a byte.

The owner of a listening port ``issue()``s a token to a trusted caller over a trusted channel
(the edge asks the stream actor over Ray); whoever connects must present it first, and
``redeem`` accepts each token once, before it expires. Tokens are fixed-length ASCII, so
the listener reads exactly ``TOKEN_LENGTH`` bytes and never more.
"""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["OneTimeTokens", "TOKEN_LENGTH"]

TOKEN_LENGTH = 48  # token_hex(24): 192 random bits as 48 ASCII characters


class OneTimeTokens:
    """Thread-safe: issued from one thread (the actor's event loop), redeemed from another
    (the listener's accept thread)."""

    def __init__(self, ttl: float = 30.0, max_live: int = 16, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_live = max_live  # beyond this, issuing forgets the oldest token
        self._clock = clock
        self._live: OrderedDict[bytes, float] = OrderedDict()  # token -> expiry, oldest first
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = secrets.token_hex(TOKEN_LENGTH // 2)
        with self._lock:
            self._prune()
            while len(self._live) >= self.max_live:
                self._live.popitem(last=False)
            self._live[token.encode("ascii")] = self._clock() + self.ttl
        return token

    def redeem(self, presented: bytes) -> bool:
        """Whether ``presented`` is a live token; it is spent if so. Every live token is
        compared in constant time, so timing tells nothing about how close a guess was."""
        with self._lock:
            self._prune()
            match = None
            for token in self._live:
                if hmac.compare_digest(token, presented):
                    match = token
            if match is None:
                return False
            del self._live[match]
            return True

    def _prune(self) -> None:
        now = self._clock()
        for token in [t for t, expiry in self._live.items() if expiry <= now]:
            del self._live[token]
