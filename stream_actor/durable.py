"""Durable files: once a Postgres row (or a journal entry) points at a file, a power cut must
not leave the row pointing at nothing, so the file and its directory entry reach the disk
first."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    """Make the directory's entries (a new name, a rename) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` over ``path``: its data first, then the rename, reach the disk."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)
