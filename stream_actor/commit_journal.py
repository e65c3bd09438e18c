"""The commit journal: clips cut to disk whose Postgres commit has not happened yet.

A stream actor cuts a clip as soon as its moment is ready, whether or not Postgres answers,
and appends the commit it owes to this journal: an append-only file of JSON lines in the
channel's clip folder, one fsynced line per entry, so the promise survives a crash or a
restart of the actor. The commits are replayed in journal order (commit order is id order);
an entry is settled (a ``done`` line) only after its commit succeeded, or was judged
impossible and reported. A commit replayed after a crash between the commit and its ``done``
line finds the first one by its key (``records.store.Store.commit_clip``), so it is never
doubled. The file is emptied whenever nothing is pending.

Line formats: ``{"op": "add", "key": ..., "event": ..., "clip": ... | null, "lost": ""}`` and
``{"op": "done", "key": ...}``. A torn last line (a crash mid-append) is ignored and cut off.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import msgspec

from records.wire import ClipRecord, MomentEvent
from stream_actor.durable import fsync_dir, fsync_file

log = logging.getLogger(__name__)

JOURNAL_NAME = "commits.journal"


class Add(msgspec.Struct, tag_field="op", tag="add", forbid_unknown_fields=True):
    """A commit owed: the clip (files on disk) or, with ``clip`` None, the moment's loss."""

    key: str  # the clip's commit key (its files' name)
    event: MomentEvent
    clip: ClipRecord | None = None
    lost: str = ""  # why the clip could not be cut (when ``clip`` is None)


class Done(msgspec.Struct, tag_field="op", tag="done", forbid_unknown_fields=True):
    key: str


Line = Add | Done
_decoder = msgspec.json.Decoder(Line)
_encoder = msgspec.json.Encoder()


def pending_of(lines: list[bytes]) -> list[Add]:
    """The entries not settled, in order (pure: the replay of a journal's lines)."""
    pending: dict[str, Add] = {}
    for raw in lines:
        if not raw.strip():
            continue
        line = _decoder.decode(raw)
        if isinstance(line, Add):
            pending.setdefault(line.key, line)
        else:
            pending.pop(line.key, None)
    return list(pending.values())


class CommitJournal:
    """One channel's journal. Blocking file I/O: call it through ``asyncio.to_thread``."""

    def __init__(self, folder: Path):
        self.path = Path(folder, JOURNAL_NAME)
        self._lock = threading.Lock()
        self._pending: dict[str, Add] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        lines = data.split(b"\n")
        whole, tail = lines[:-1], lines[-1]  # the part after the last newline never finished
        good: list[bytes] = []
        for raw in whole:
            try:
                pending_of([raw])
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                # a line that cannot be read is a promise we cannot keep: say so, keep the rest
                log.error("commit journal %s: unreadable entry dropped (%s): %.200r", self.path, exc, raw)
                continue
            good.append(raw)
        if tail:
            log.warning("commit journal %s: a torn last entry (a crash mid-append) is ignored", self.path)
        self._pending = {entry.key: entry for entry in pending_of(good)}
        if tail or len(good) != len(whole) or len(good) != len(self._pending):
            self._rewrite()  # settled entries and damage go; what is pending stays, in order

    def pending(self) -> list[Add]:
        with self._lock:
            return list(self._pending.values())

    def keys(self) -> set[str]:
        with self._lock:
            return set(self._pending)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, entry: Add) -> None:
        """Append ``entry`` and return once it is on disk."""
        with self._lock:
            if entry.key in self._pending:
                return
            self._append(_encoder.encode(entry))
            self._pending[entry.key] = entry

    def done(self, key: str) -> None:
        """Settle ``key``: once nothing is pending the file is emptied."""
        with self._lock:
            if self._pending.pop(key, None) is None:
                return
            if self._pending:
                self._append(_encoder.encode(Done(key)))
            else:
                self._rewrite()

    def _append(self, line: bytes) -> None:
        new = not self.path.exists()
        with open(self.path, "ab") as f:
            f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(self.path.parent)

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            for entry in self._pending.values():
                f.write(_encoder.encode(entry) + b"\n")
        fsync_file(tmp)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
