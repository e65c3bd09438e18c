"""Silero VAD, the ONNX model faster-whisper ships, loaded without importing faster-whisper.

Importing ``faster_whisper`` pulls in CTranslate2, tokenizers and the Hugging Face hub
client. A stream actor whose whisper runs in its node's ASR server only needs the VAD, so
it loads the same file straight into onnxruntime, with faster-whisper's session settings
(one thread, no memory arena). The transcribers read ``.session`` as they would from
``faster_whisper.vad.get_vad_model()``.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import NamedTuple

VAD_FILE = "silero_vad_v6.onnx"


class SileroVad(NamedTuple):
    session: object  # onnxruntime.InferenceSession: inputs "input", "h", "c"


def vad_path() -> Path:
    """The bundled model's file, found from where faster-whisper is installed (not imported)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("faster-whisper is not installed: its bundled Silero VAD model is needed")
    path = Path(next(iter(spec.submodule_search_locations)), "assets", VAD_FILE)
    if not path.is_file():
        raise RuntimeError(f"faster-whisper's Silero VAD model is missing ({VAD_FILE}): a faster-whisper that ships it is needed")
    return path


@functools.cache  # one session per process: run() is thread-safe, the recurrent state is the caller's
def load_vad() -> SileroVad:
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    return SileroVad(onnxruntime.InferenceSession(str(vad_path()), providers=["CPUExecutionProvider"], sess_options=opts))
