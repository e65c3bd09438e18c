"""Channel settings never reach the filesystem by path, and every option is typed and bounded.

HUD profiles, their templates and YOLO weights, and whisper models are names resolved inside
the package or the operator's ``--profiles-dir`` / ``--models-dir``; everything a channel sets
is bounded, and a bad value answers 422 naming the field. The gateway runs for real (uvicorn
in its own thread, a real Store and Redis) so that a request that blocked or starved its
event loop would show as a timeout here, not as a hung test.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import httpx
import msgspec
import numpy as np
import pytest

from bench.gateway_server import serve_gateway
from conftest import free_port
from detectors.assets import TEMPLATE_MAX_BYTES, AssetDirs, AssetError, whisper_model_dir
from detectors.hud import HudDetector, ProfileError, load_profile
from records.settings import Settings
from stream_actor.settings import validate_channel_settings

KEY = "settings-safety-key-4d1e"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLE = Path(__file__).resolve().parents[1] / "detectors" / "profiles" / "example_shooter"
PATIENCE = 10.0  # seconds a refusal may take on a loaded machine; a blocked gateway never answers


def make_profile(folder: Path, **changes) -> Path:
    """A copy of the example profile (its template included) in ``folder``, with ``changes``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLE / "templates", folder / "templates", dirs_exist_ok=True)
    raw = json.loads((EXAMPLE / "profile.json").read_text())
    raw.update(changes)
    (folder / "profile.json").write_text(json.dumps(raw))
    return folder


@pytest.fixture
def profiles_dir(tmp_path) -> Path:
    root = tmp_path / "profiles"
    make_profile(root / "my_game", name="my_game")
    # A FIFO where a profile file should be: opening it for reading would block.
    (root / "fifo_game").mkdir()
    os.mkfifo(root / "fifo_game" / "profile.json")
    # A profile folder that is a symlink out of the profiles dir.
    make_profile(tmp_path / "elsewhere" / "outside_game", name="outside_game")
    (root / "linked_game").symlink_to(tmp_path / "elsewhere" / "outside_game")
    # A profile file that is a symlink to a file of the host.
    (root / "passwd_game").mkdir()
    (root / "passwd_game" / "profile.json").symlink_to("/etc/passwd")
    return root


@pytest.fixture
def gateway(tmp_path, profiles_dir, pg_dsn, redis_url):
    # Private URLs allowed: the channels below name IP literals, so no test depends on DNS.
    settings = Settings(data_dir=str(tmp_path / "data"), api_key=KEY, port=free_port(), allow_private_urls=True,
                        profiles_dir=str(profiles_dir), rate_limit=100_000)
    with serve_gateway(settings, pg_dsn, redis_url) as url:
        with httpx.Client(base_url=url, headers=AUTH, timeout=PATIENCE) as client:
            yield client


def create(client: httpx.Client, settings: dict, source: str = "rtmp", url: str | None = None) -> httpx.Response:
    body = {"name": "x", "source": source, "settings": settings} | ({"url": url} if url else {})
    return client.post("/api/channels", json=body)


def refused(resp: httpx.Response, *fragments: str) -> str:
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    assert resp.json()["error"]["code"] == "invalid_request"
    assert message.startswith("settings: ")
    for fragment in fragments:
        assert fragment in message
    return message


def test_hud_profile_paths_answer_422_quickly_and_the_gateway_stays_up(gateway, tmp_path):
    fifo = tmp_path / "a.fifo"
    os.mkfifo(fifo)  # no writer: reading it blocks forever
    link = tmp_path / "link.json"
    link.symlink_to("/etc/passwd")
    # The FIFO first: on a gateway that reads paths it blocks here, and the test fails fast.
    for path in (str(fifo), "/etc/passwd", str(link), "/dev/zero"):
        started = time.monotonic()
        message = refused(create(gateway, {"hud": {"profile": path}}), "$.hud.profile")
        assert time.monotonic() - started < PATIENCE
        assert "root:" not in message  # no file content comes back
        assert gateway.get("/healthz").status_code == 200  # the gateway still answers
        assert gateway.get("/api/channels").status_code == 200


def test_names_in_the_profiles_dir_that_lead_elsewhere_are_refused_alike(gateway):
    # A FIFO profile file, a folder symlinked out of the dir, a profile file symlinked to
    # /etc/passwd: refused without blocking, and without telling these apart from a name
    # that does not exist, and without any content.
    missing = refused(create(gateway, {"hud": {"profile": "no_such_game"}}), "$.hud.profile")
    assert missing.startswith("settings: no game profile named 'no_such_game'")
    for name in ("fifo_game", "linked_game", "passwd_game"):
        started = time.monotonic()
        message = refused(create(gateway, {"hud": {"profile": name}}), "$.hud.profile")
        assert time.monotonic() - started < PATIENCE
        assert "root:" not in message and "elsewhere" not in message
        assert gateway.get("/healthz").status_code == 200
    assert refused(create(gateway, {"hud": {"profile": "linked_game"}})).startswith(
        "settings: no game profile named 'linked_game'")  # as if it did not exist


def test_a_profile_in_the_profiles_dir_is_used_by_name(gateway, profiles_dir):
    resp = create(gateway, {"hud": {"profile": "my_game"}})
    assert resp.status_code == 201, resp.text
    assert resp.json()["settings"]["hud"]["profile"] == "my_game"
    assert create(gateway, {"hud": {"profile": "example_shooter"}}).status_code == 201  # bundled ones still work
    profile = load_profile("my_game", AssetDirs(profiles_dir=str(profiles_dir)))
    assert profile.name == "my_game"
    assert Path(profile.templates[0].file).is_relative_to(profiles_dir.resolve() / "my_game")
    HudDetector(msgspec.structs.replace(profile, ocr=[]))  # its template loads
    with pytest.raises(ProfileError, match="no game profile named 'my_game'"):
        load_profile("my_game")  # not without the operator's dir


@pytest.mark.parametrize("settings, field", [
    ({"speech": {"cpu_threads": 512}}, "$.speech.cpu_threads"),
    ({"speech": {"model": "/tmp/model"}}, "$.speech.model"),
    ({"speech": {"model": "../models/small.en"}}, "$.speech.model"),
    ({"speech": {"model": "small.en"}}, "$.speech.model"),  # a name, but no --models-dir holds it
    ({"hud": {"frame_width": 100_000}}, "$.hud.frame_width"),
    ({"hud": {"frame_height": 50_000}}, "$.hud.frame_height"),
    ({"clip": {"post_roll": -1}}, "$.clip.post_roll"),
    ({"fusion": {"threshold": 0}}, "$.fusion.threshold"),
    ({"loudness": {"hop": 0}}, "$.loudness.hop"),
    ({"chat_login": "../../x"}, "$.chat_login"),
    ({"source": {"bogus": 1}}, "unknown field `bogus` - at `$.source`"),  # an rtmp channel
    ({"source": {"probesize": -1}}, "$.source.probesize"),
])
def test_out_of_range_values_and_unknown_keys_answer_422_naming_the_field(gateway, settings, field):
    refused(create(gateway, settings), field)


@pytest.mark.parametrize("url, source, field", [
    ("rtsp://10.0.0.7/stream1", {"max_backoff": 0}, "$.source.max_backoff"),
    ("rtsp://10.0.0.7/stream1", {"transport": "carrier-pigeon"}, "$.source.transport"),
    ("rtsp://10.0.0.7/stream1", {"quality": "best"}, "unknown field `quality` - at `$.source`"),  # an http option
    ("https://10.0.0.8/live.m3u8", {"max_backoff": 0}, "$.source.max_backoff"),
    ("https://10.0.0.8/live.m3u8", {"timeout": 1e9}, "$.source.timeout"),
    ("https://10.0.0.8/live.m3u8", {"bogus": True}, "unknown field `bogus` - at `$.source`"),
    ("https://10.0.0.8/live.m3u8", {"allow_private": True}, "$.source.allow_private"),  # the operator's
])
def test_source_options_are_checked_against_the_urls_plugin(gateway, url, source, field):
    refused(create(gateway, {"source": source}, "url", url), field)


def test_good_source_options_pass_for_their_plugin(gateway):
    for url, source in (("rtsp://10.0.0.7/stream1", {"transport": "udp", "max_backoff": 30}),
                        ("https://10.0.0.8/live.m3u8", {"quality": "720p,best", "realtime": True})):
        resp = create(gateway, {"source": source}, "url", url)
        assert resp.status_code == 201, resp.text
        assert resp.json()["settings"]["source"] == source


def test_vod_items_use_the_same_validation(gateway):
    item = {"url": "http://10.0.0.9/match.mp4"}
    for settings, field in (({"speech": {"cpu_threads": 512}}, "$.speech.cpu_threads"),
                            ({"hud": {"profile": "/dev/zero"}}, "$.hud.profile"),
                            ({"source": {"realtime": True}}, "$.source")):  # no source plugin reads a VOD's
        resp = gateway.post("/api/vods", json=item | {"settings": settings})
        assert resp.status_code == 422, resp.text
        assert field in resp.json()["error"]["message"]
    resp = gateway.post("/api/vods", json=item | {"settings": {"hud": {"profile": "my_game"}}})
    assert resp.status_code == 201, resp.text


# ------------------------------------------------------------------ files inside a profile


def png(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return data.tobytes()


def with_template(root: Path, file: str) -> AssetDirs:
    make_profile(root / "game", name="game", ocr=[], templates=[
        {"region": "killfeed", "file": file, "threshold": 0.75, "event": "kill"}])
    return AssetDirs(profiles_dir=str(root))


def test_template_and_weight_paths_must_stay_inside_the_profile_folder(tmp_path):
    (tmp_path / "outside.png").write_bytes((EXAMPLE / "templates" / "kill_icon.png").read_bytes())
    root = tmp_path / "profiles"
    for file in ("../../outside.png", str(tmp_path / "outside.png"), "/etc/passwd", "templates/../../../outside.png"):
        dirs = with_template(root, file)
        with pytest.raises(ProfileError, match="no regular file of that name inside its folder"):
            load_profile("game", dirs)
    # A symlink inside the folder that points out of it.
    (root / "game" / "templates" / "out.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ProfileError, match="no regular file of that name inside its folder"):
        load_profile("game", with_template(root, "templates/out.png"))
    # A FIFO and a device are not regular files.
    os.mkfifo(root / "game" / "templates" / "pipe.png")
    with pytest.raises(ProfileError, match="no regular file"):
        load_profile("game", with_template(root, "templates/pipe.png"))
    # The same for the YOLO weights.
    make_profile(root / "game", name="game", yolo={"weights": "../../outside.onnx", "classes": {"0": {"event": "kill"}}})
    (tmp_path / "outside.onnx").write_bytes(b"onnx")
    with pytest.raises(ProfileError, match="yolo weights '../../outside.onnx': no regular file"):
        load_profile("game", AssetDirs(profiles_dir=str(root)))
    # A symlink inside the folder that stays inside is fine.
    (root / "game" / "templates" / "alias.png").symlink_to("kill_icon.png")
    assert load_profile("game", with_template(root, "templates/alias.png")).templates[0].file.endswith("kill_icon.png")


def test_template_files_are_capped_in_bytes_and_pixels(tmp_path):
    root = tmp_path / "profiles"
    dirs = with_template(root, "templates/big.png")
    (root / "game" / "templates" / "big.png").write_bytes(png(8, 8) + b"\0" * TEMPLATE_MAX_BYTES)
    with pytest.raises(ProfileError, match="larger than"):
        load_profile("game", dirs)
    # A small file that would decode to a huge image (a PNG bomb) is refused from its header.
    (root / "game" / "templates" / "big.png").write_bytes(png(4000, 8))
    profile = load_profile("game", dirs)
    with pytest.raises(ProfileError, match=r"\(4000x8\) is bigger than the profile's frame"):
        HudDetector(profile)


def test_a_profile_file_is_capped(tmp_path):
    root = tmp_path / "profiles"
    make_profile(root / "game", name="game", description="x" * 100)
    with (root / "game" / "profile.json").open("a") as f:
        f.write(" " * 70_000)  # valid JSON, but bigger than a profile needs to be
    with pytest.raises(ProfileError, match="larger than 65536 bytes"):
        load_profile("game", AssetDirs(profiles_dir=str(root)))


# ------------------------------------------------------------------ whisper models


def test_speech_model_is_a_name_in_the_models_dir(tmp_path):
    models = tmp_path / "models"
    (models / "small.en").mkdir(parents=True)
    (models / "small.en" / "model.bin").write_bytes(b"weights")
    dirs = AssetDirs(models_dir=str(models))
    assert whisper_model_dir("small.en", dirs) == str((models / "small.en").resolve())
    assert whisper_model_dir("", dirs) == whisper_model_dir("tiny.en", dirs)  # the bundled one
    validate_channel_settings({"speech": {"model": "small.en"}}, "rtmp", None, dirs)
    for name in ("/etc", "../models/small.en", "small.en/..", "Small.EN"):
        with pytest.raises(msgspec.ValidationError, match=r"\$\.speech\.model"):
            validate_channel_settings({"speech": {"model": name}}, "rtmp", None, dirs)
    # A model folder that is a symlink out of the models dir reads as missing.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "model.bin").write_bytes(b"weights")
    (models / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AssetError, match="no whisper model named 'linked'"):
        whisper_model_dir("linked", dirs)
    # So does one of its files leading out.
    (models / "small.en" / "vocabulary.txt").symlink_to("/etc/passwd")
    with pytest.raises(AssetError, match="not a regular file inside its folder"):
        whisper_model_dir("small.en", dirs)


def test_the_operator_directories_are_livecut_up_flags(tmp_path, monkeypatch):
    from supervisor.cli import parse_args

    monkeypatch.delenv("LIVECUT_PROFILES_DIR", raising=False)
    monkeypatch.delenv("LIVECUT_MODELS_DIR", raising=False)
    (tmp_path / "p").mkdir()
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    args = parse_args(["up", "--profiles-dir", "p", "--models-dir", "m"])
    assert (args.profiles_dir, args.models_dir) == (str(tmp_path / "p"), str(tmp_path / "m"))  # absolute
    assert (parse_args(["up"]).profiles_dir, parse_args(["up"]).models_dir) == ("", "")
    with pytest.raises(SystemExit):
        parse_args(["up", "--profiles-dir", str(tmp_path / "missing")])
