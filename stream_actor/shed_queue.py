"""A bounded queue of audio for ASR that sheds the oldest audio when full.

The detect thread must never block on a slow transcriber (that would stall every detector
and, through the media queue, ingest), and memory must not grow with the backlog either. So
when ``max_seconds`` of audio wait, the oldest chunk is dropped for each new one: the
transcript gets a gap (the freshest audio matters most live), and ``shed_seconds`` counts
what was dropped (reported in the actor's health as ``asr_shed_seconds``).
"""
from __future__ import annotations

import queue
import threading

SAMPLE_RATE = 16000


class SheddingQueue:
    def __init__(self, max_seconds: float = 60.0, sample_rate: int = SAMPLE_RATE):
        self.max_seconds = max_seconds
        self.sample_rate = sample_rate
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.queued_seconds = 0.0
        self.shed_seconds = 0.0
        self.shed_chunks = 0

    def _seconds(self, item) -> float:
        return len(item[1]) / self.sample_rate if item else 0.0

    def put(self, item) -> None:
        """Queue ``(t0, samples)`` (or the ``None`` end marker); never blocks."""
        with self._lock:
            self.queued_seconds += self._seconds(item)
            while self.queued_seconds > self.max_seconds:
                try:
                    old = self._q.get_nowait()
                except queue.Empty:
                    break
                if old is None:  # the end marker is never shed
                    self._q.put(old)
                    break
                self.queued_seconds -= self._seconds(old)
                self.shed_seconds += self._seconds(old)
                self.shed_chunks += 1
            self._q.put(item)

    def get(self, timeout: float | None = None):
        item = self._q.get(timeout=timeout)
        with self._lock:
            self.queued_seconds = max(0.0, self.queued_seconds - self._seconds(item))
        return item

    def qsize(self) -> int:
        return self._q.qsize()
