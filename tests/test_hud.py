"""HUD events from a game profile, on the synthetic shooter of ``hud_fixture``.

Real parts throughout: easyocr on its offline weights, a YOLO model built from its yaml by
ultralytics and exported to ONNX here (random weights, nothing downloaded), onnxruntime.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest

import hud_fixture as F
from detectors import hud_models
from detectors.hud import HudDetector, ProfileError, bundled_profiles, load_profile, load_profile_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "detectors" / "profiles" / "example_shooter"

# 24 frames at 2 fps: a 3-frame "ELIMINATED" with the kill icon, a 2-frame "3 KILLS" with
# the icon, a 3-frame "VICTORY", and a cut to another scene (palette) at frame 9.
PLAN = {
    **{i: F.Planted("ELIMINATED", icon=True) for i in (4, 5, 6)},
    **{i: F.Planted("3 KILLS", icon=True) for i in (12, 13)},
    **{i: F.Planted("VICTORY") for i in (19, 20, 21)},
}
CUTS = {9: 1}
EXPECTED = [
    (2.0, "kill: template kill_icon.png"),
    (2.0, "eliminated: ELIMINATED"),
    (6.0, "kill: template kill_icon.png"),
    (6.0, "multikill: 3 KILLS"),
    (9.5, "victory: VICTORY"),
]


@pytest.fixture(scope="module")
def ocr_reader():
    return hud_models.load_ocr_reader(threads=1)


def run(det: HudDetector, seq) -> tuple[list, list[float], list[float]]:
    """Push a sequence; return the signals and the frame times OCR and YOLO ran on."""
    signals, ocr_at, yolo_at = [], [], []
    for t, frame, _ in seq:
        n_ocr, n_yolo = det.ocr_calls, det.yolo_calls
        signals += det.push(t, frame)
        if det.ocr_calls > n_ocr:
            ocr_at.append(t)
        if det.yolo_calls > n_yolo:
            yolo_at.append(t)
    return signals, ocr_at, yolo_at


def changed_frames(seq) -> list[float]:
    """Where the banner region really changed: the first frame, a banner coming or going, a cut."""
    out = []
    for i, (t, _, what) in enumerate(seq):
        prev = seq[i - 1][2] if i else None
        if prev is None or prev.banner != what.banner or prev.scene != what.scene:
            out.append(t)
    return out


def summary(signals) -> list[tuple[float, str]]:
    return [(s.t, s.detail.rsplit(" ", 1)[0] if s.detail.startswith("kill:") else s.detail) for s in signals]


# ------------------------------------------------------------------------------ the profile


def test_example_profile_loads():
    assert "example_shooter" in bundled_profiles()
    p = load_profile("example_shooter")
    assert p == load_profile_file(EXAMPLE / "profile.json")
    assert (p.frame_width, p.frame_height) == (640, 360)
    assert set(p.regions) == {"banner", "killfeed"}
    assert Path(p.templates[0].file).is_absolute() and Path(p.templates[0].file).is_file()
    assert [r.event for r in p.ocr] == ["eliminated", "victory", "multikill"]
    assert p.yolo is None


def test_a_toml_profile_loads_like_json(tmp_path):
    (tmp_path / "icon.png").write_bytes((EXAMPLE / "templates" / "kill_icon.png").read_bytes())
    (tmp_path / "game.toml").write_text(
        'name = "toml_game"\nframe_width = 640\nframe_height = 360\ncooldown = 2.0\n'
        "[regions]\nfeed = [0.35, 0.04, 0.3, 0.2]\n"
        '[[templates]]\nregion = "feed"\nfile = "icon.png"\nevent = "kill"\n'
    )
    p = load_profile_file(tmp_path / "game.toml")
    assert p.templates[0].file == str((tmp_path / "icon.png").resolve())
    assert p.templates[0].threshold == 0.8 and p.cooldown == 2.0


def _write(tmp_path: Path, **changes) -> Path:
    raw = json.loads((EXAMPLE / "profile.json").read_text())
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "kill_icon.png").write_bytes((EXAMPLE / "templates" / "kill_icon.png").read_bytes())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"colour": "red"}, "unknown field `colour`"),
        ({"name": None}, "missing required field `name`"),
        ({"frame_width": "wide"}, "Expected `int`, got `str` - at `$.frame_width`"),
        ({"regions": {"banner": [0.9, 0.3, 0.3, 0.2], "killfeed": [0.35, 0.04, 0.3, 0.2]}}, "region 'banner'"),
        ({"regions": {"banner": [0.1, 0.3, 0.8]}}, "Expected `array` of length 4"),
        ({"ocr": [{"region": "scoreboard", "pattern": "WIN", "event": "win"}]}, "region 'scoreboard', which is not in regions"),
        ({"ocr": [{"region": "banner", "pattern": "(KILLS", "event": "multikill"}]}, "not a valid regex"),
        ({"ocr": [{"region": "banner", "pattern": "X", "event": "x", "colour": 1}]}, "unknown field `colour` - at `$.ocr[0]`"),
        ({"templates": [{"region": "killfeed", "file": "nope.png", "event": "kill"}]},
         "template file 'nope.png': no regular file of that name inside its folder"),
        ({"yolo": {"weights": "nope.onnx", "classes": {"0": {"event": "kill"}}}},
         "yolo weights 'nope.onnx': no regular file of that name inside its folder"),
        ({"change_area": 0}, "change_area must be in (0, 1]"),
    ],
)
def test_a_bad_profile_gives_a_clear_error(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(ProfileError) as err:
        load_profile_file(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_other_profile_errors(tmp_path):
    (tmp_path / "broken.json").write_text("{\"name\": ")
    with pytest.raises(ProfileError, match="broken.json: Input data was truncated"):
        load_profile_file(tmp_path / "broken.json")
    with pytest.raises(ProfileError, match="no game profile named 'no_such_game' bundled"):
        load_profile("no_such_game")
    # A template bigger than its region is found when the detector loads it.
    p = msgspec.structs.replace(load_profile("example_shooter"), ocr=[], regions={"banner": (0.1, 0.3, 0.8, 0.25), "killfeed": (0.4, 0.05, 0.02, 0.02)})
    with pytest.raises(ProfileError, match="bigger than region 'killfeed'"):
        HudDetector(p)


def test_the_committed_template_is_what_make_templates_makes(tmp_path):
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_templates
    finally:
        sys.path.remove(str(EXAMPLE))
    [made] = make_templates.make(tmp_path)
    committed = cv2.imread(str(EXAMPLE / "templates" / "kill_icon.png"), cv2.IMREAD_UNCHANGED)
    assert committed.shape == (F.ICON_SIZE, F.ICON_SIZE, 4)
    assert np.array_equal(cv2.imread(str(made), cv2.IMREAD_UNCHANGED), committed)


# ------------------------------------------------------------------------------ detection


def test_example_profile_finds_the_planted_banner_and_ignores_the_permanent_hud(ocr_reader):
    seq = F.sequence(PLAN, 24, fps=2.0, scene_from=CUTS)
    det = HudDetector(load_profile("example_shooter"), ocr_reader=ocr_reader)
    signals, ocr_at, _ = run(det, seq)
    assert summary(signals) == EXPECTED
    assert {s.name for s in signals} == {"hud"}
    assert [s.value for s in signals] == [0.5, 1.0, 0.5, 1.5, 2.0]  # the profile's weights
    # OCR ran only where the banner region changed: first frame, each banner on and off, the cut.
    assert ocr_at == changed_frames(seq) == [0.0, 2.0, 3.5, 4.5, 6.0, 7.0, 9.5, 11.0]
    assert det.frames == 24 and det.ocr_calls == 8 and det.yolo_calls == 0


def test_the_permanent_hud_alone_never_fires(ocr_reader):
    # Health draining, ammo counting down, the minimap dot moving, gameplay panning: 30 s.
    seq = F.sequence({}, 60, fps=2.0)
    det = HudDetector(load_profile("example_shooter"), ocr_reader=ocr_reader)
    signals, ocr_at, _ = run(det, seq)
    assert signals == []
    assert ocr_at == [0.0]  # the first frame only: nothing in the banner region changed after it


@pytest.mark.parametrize("size", [(1280, 720), (480, 270)])
def test_any_resolution(ocr_reader, size):
    seq = F.sequence(PLAN, 24, fps=2.0, width=size[0], height=size[1], scene_from=CUTS)
    det = HudDetector(load_profile("example_shooter"), ocr_reader=ocr_reader)
    signals, ocr_at, _ = run(det, seq)
    assert summary(signals) == EXPECTED
    assert ocr_at == changed_frames(seq)


def test_gray_frames_work(ocr_reader):
    # Gray loses colour contrast (the pale red "ELIMINATED" barely clears the gate in gray):
    # the actor should feed BGR. White text and icons work the same in gray.
    plan = {i: F.Planted("3 KILLS", icon=True) for i in (4, 5)}
    seq = [(t, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), w) for t, f, w in F.sequence(plan, 10, fps=2.0)]
    det = HudDetector(load_profile("example_shooter"), ocr_reader=ocr_reader)
    signals, ocr_at, _ = run(det, seq)
    assert summary(signals) == [(2.0, "kill: template kill_icon.png"), (2.0, "multikill: 3 KILLS")]
    assert ocr_at == [0.0, 2.0, 3.0]


def test_easyocr_reads_the_banner(ocr_reader):
    p = load_profile("example_shooter")
    x0, y0, x1, y1 = p.region_box("banner", 640, 360)
    for i, banner in [(4, "ELIMINATED"), (12, "3 KILLS"), (19, "VICTORY")]:
        crop = np.ascontiguousarray(F.render(i, banner=banner)[y0:y1, x0:x1])
        pieces = ocr_reader(crop)
        assert " ".join(text for text, _ in pieces).upper() == banner, pieces
    print(f"easyocr: {ocr_reader.seconds / ocr_reader.calls:.2f} s per call on {x1 - x0}x{y1 - y0}")


class ScriptedOcr:
    """Reads what the test says is on screen (the frame index's text), and counts calls."""

    def __init__(self, texts: dict[int, str]) -> None:
        self.texts, self.i, self.calls = texts, 0, 0

    def __call__(self, image: np.ndarray) -> list[tuple[str, float]]:
        self.calls += 1
        return [(self.texts.get(self.i, ""), 0.9)]


def test_a_banner_fires_once_while_up_and_again_after_the_cooldown():
    p = msgspec.structs.replace(load_profile("example_shooter"), templates=[], change_threshold=0.0)
    assert p.cooldown == 3.0
    texts = {i: "ELIMINATED" for i in range(2, 10)}  # up for 4 s (OCR reads it 8 times)
    texts.update({11: "ELIMINATED", 12: "ELIMINATED"})  # back after 0.5 s off: OCR flicker
    texts[20] = "ELIMINATED"  # back after 4 s off: a new one
    texts.update({24: "2 KILLS", 31: "3 KILLS", 32: "3  kills"})  # a new count is a new event...
    texts.update({i: "4 KILLS" for i in range(33, 38)})  # ...but not within 3 s of the last one
    texts.update({38: "5 KILLS", 39: "5 KILLS"})
    ocr = ScriptedOcr(texts)
    det = HudDetector(p, ocr_reader=ocr)
    rng = np.random.default_rng(0)
    signals = []
    for i in range(40):
        ocr.i = i
        signals += det.push(i / 2, rng.integers(0, 255, (360, 640, 3), np.uint8))  # always "changed"
    assert ocr.calls == 40
    assert [(s.t, s.detail) for s in signals] == [
        (1.0, "eliminated: ELIMINATED"),
        (10.0, "eliminated: ELIMINATED"),
        (12.0, "multikill: 2 KILLS"),
        (15.5, "multikill: 3 KILLS"),
        (19.0, "multikill: 5 KILLS"),
    ]


def test_bad_frames_are_refused():
    det = HudDetector(msgspec.structs.replace(load_profile("example_shooter"), ocr=[]))
    with pytest.raises(ValueError, match="uint8 BGR"):
        det.push(0.0, np.zeros((360, 640, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 BGR"):
        det.push(0.0, np.zeros((360, 640, 4), np.uint8))


# ------------------------------------------------------------------------------ dependencies


def test_ocr_without_easyocr_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "easyocr", None)  # import easyocr -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'livecut\[ocr\]'"):
        hud_models.load_ocr_reader()
    with pytest.raises(ImportError, match=r"pip install 'livecut\[ocr\]'"):
        HudDetector(load_profile("example_shooter"))


def test_hud_imports_and_matches_templates_without_torch():
    code = """
import sys
for name in ("torch", "torchvision", "easyocr", "onnxruntime"):
    sys.modules[name] = None  # not installed
import msgspec
import detectors.hud as hud
sys.path.insert(0, "tests")
import hud_fixture as F
p = hud.load_profile("example_shooter")
det = hud.HudDetector(msgspec.structs.replace(p, ocr=[]))
print([s.detail.split(" ")[0] for t in (0.0, 0.5) for s in det.push(t, F.render(int(2 * t), icon=t > 0))])
try:
    hud.HudDetector(p)
except ImportError as e:
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['kill:']"
    assert "pip install 'livecut[ocr]'" in lines[1]


def test_torchvision_imports_on_cpu_torch():
    import torch

    assert hud_models.ensure_torchvision_ops() in ("compiled", "shim")
    import torchvision  # noqa: F401  (fails without the shim on this CPU torch + CUDA torchvision)

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (200, 2))
    boxes = np.hstack([xy, xy + rng.uniform(5, 40, (200, 2))]).astype(np.float32)
    scores = rng.uniform(0, 1, 200).astype(np.float32)
    kept = torch.ops.torchvision.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5)
    assert kept.dtype == torch.long
    assert kept.tolist() == hud_models.nms(boxes, scores, 0.5).tolist()
    assert torch.ops.torchvision.nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).numel() == 0


# ------------------------------------------------------------------------------ YOLO


def test_yolo_letterbox_and_postprocess():
    image = np.full((360, 640, 3), (10, 20, 30), np.uint8)
    blob, scale, pad = hud_models.letterbox(image, (320, 320))
    assert blob.shape == (1, 3, 320, 320) and blob.dtype == np.float32
    assert scale == 0.5 and pad == (0, 70)
    assert np.isclose(blob[0, :, 0, 0], 114 / 255).all()  # padding
    assert np.allclose(blob[0, :, 160, 160], [30 / 255, 20 / 255, 10 / 255])  # RGB

    names = {0: "kill_icon", 1: "skull"}
    out = np.zeros((1, 6, 5), np.float32)  # [1, 4 + nc, N]: cx, cy, w, h, score per class
    out[0, :, 0] = [100, 120, 40, 20, 0.9, 0.0]  # kept
    out[0, :, 1] = [102, 121, 40, 20, 0.8, 0.1]  # same object, same class: suppressed
    out[0, :, 2] = [101, 120, 40, 20, 0.0, 0.7]  # same place, other class: kept
    out[0, :, 3] = [250, 200, 30, 30, 0.1, 0.2]  # below the confidence floor
    out[0, :, 4] = [300, 300, 60, 60, 0.0, 0.3]  # kept, clipped to the image
    found = hud_models.postprocess(out, scale, pad, (360, 640), names, conf=0.25, iou=0.45)
    assert [(d.cls, d.name, round(d.confidence, 2)) for d in found] == [(0, "kill_icon", 0.9), (1, "skull", 0.7), (1, "skull", 0.3)]
    assert np.allclose(found[0].box, [(100 - 20) / 0.5, (120 - 10 - 70) / 0.5, (100 + 20) / 0.5, (120 + 10 - 70) / 0.5])
    assert found[2].box[3] == 360.0  # clipped

    # NMS-free (end2end) exports: [1, N, 6] = x1, y1, x2, y2, score, class.
    e2e = np.array([[[80, 100, 120, 140, 0.9, 1], [0, 0, 10, 10, 0.1, 0]]], np.float32)
    [d] = hud_models.postprocess(e2e, scale, pad, (360, 640), names, end2end=True)
    assert (d.name, d.box) == ("skull", (160.0, 60.0, 240.0, 140.0))


@pytest.fixture
def no_network(monkeypatch):
    """Sockets refuse to connect or resolve; yields the list of attempts (should stay empty)."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def export_yolo(tmp_path: Path, monkeypatch) -> Path:
    """A 2-class YOLOv8n from ultralytics' yaml (random weights), exported to ONNX at 320."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")  # no online checks, no downloads
    monkeypatch.setenv("YOLO_AUTOINSTALL", "False")  # never pip-install export requirements
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    monkeypatch.chdir(tmp_path)
    hud_models.ensure_torchvision_ops()  # ultralytics imports torchvision
    import ultralytics
    import yaml
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text())
    cfg["nc"] = 2
    spec = tmp_path / "yolov8n-hud.yaml"  # the "n" in the name picks the nano scale
    spec.write_text(yaml.safe_dump(cfg))
    model = YOLO(str(spec))
    model.model.names = {0: "kill_icon", 1: "skull"}
    return Path(model.export(format="onnx", imgsz=320, simplify=False, dynamic=False))


def test_yolo_onnx_export_runs_in_our_wrapper_and_is_gated(tmp_path, monkeypatch, no_network):
    weights = export_yolo(tmp_path, monkeypatch)
    model = hud_models.load_yolo_onnx(str(weights))
    assert model.names == {0: "kill_icon", 1: "skull"}
    assert model.input_size == (320, 320) and not model.end2end
    frame = F.render(4, banner="ELIMINATED", icon=True)
    found = model(frame, conf=0.0)  # random weights: keep everything to exercise the decoding
    assert 0 < len(found) <= 100
    for d in found:
        assert isinstance(d, hud_models.Detection) and d.name in ("kill_icon", "skull")
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 360
    assert [d.confidence for d in found] == sorted((d.confidence for d in found), reverse=True)
    print(f"yolo onnx: {model.seconds / model.calls * 1000:.0f} ms per call at 320")

    profile = {
        "name": "yolo_game",
        "frame_width": 640,
        "frame_height": 360,
        "regions": {"banner": [0.1, 0.28, 0.8, 0.25]},
        "yolo": {"weights": weights.name, "region": "banner", "classes": {"skull": {"event": "kill", "min_confidence": 0.99}}},
    }
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    det = HudDetector(load_profile_file(tmp_path / "profile.json"))
    seq = F.sequence(PLAN, 24, fps=2.0, scene_from=CUTS)
    signals, _, yolo_at = run(det, seq)
    assert signals == []  # random weights are never 99 % sure
    assert yolo_at == changed_frames(seq)  # YOLO ran only where the region changed

    # The same weights and a class floor of 0 (random weights "see" everything): it fires
    # on the first frame, through a bare onnxruntime session this time.
    profile["yolo"]["classes"] = {"0": {"event": "kill", "min_confidence": 0.0}}
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    det = HudDetector(load_profile_file(tmp_path / "profile.json"), yolo_session=model.session)
    signals, _, _ = run(det, seq)
    assert signals[0].t == 0.0 and signals[0].detail.startswith("kill: kill_icon ")
    assert os.path.getsize(weights) > 1_000_000
    assert no_network == []  # ultralytics never tried the network (YOLO_OFFLINE, no AutoUpdate)
