"""Recordings' ASR: ``detectors.transcribe.transcribe_recording`` against the live transcriber.

Generates a few minutes of espeak-ng speech (sentences with pauses of 0.2-3 s, a long
silence and a stretch of synthetic music, a faint hiss throughout) and transcribes it with
the bundled tiny.en on one CPU thread (``cpu_threads=1``, as a VOD shard's Ray task runs), with

* ``transcribe_recording``: VAD utterances packed into 30 s windows, each decoded once,
  the windows decoded 8 at a time (the default) and one call per window;
* the live ``StreamingTranscriber`` fed 0.1 s pushes (the baseline: what a recording cost
  before it had its own path);
* plain ``model.transcribe(vad_filter=True, word_timestamps=True)`` (faster-whisper's own
  defaults otherwise: beam 5, temperature fallback, conditioning on previous text).

For each it prints the words emitted, the WER against the script, words emitted in the
silence or the music, and the speed: audio seconds per CPU second and per wall second (and
CPU seconds per audio second), with ratios against the live baseline.

    .venv/bin/python -m bench.vod_asr [--json] [--repeat N] [--model NAME --models-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.asr_quality import EXTRA_SENTENCES, synth_music, wer
from bench.broadcast import CALM_SENTENCES

RATE = 16000
SPEECH_DBFS = -26.0  # the voiced RMS of the speech (bench.broadcast's level)
HISS_DBFS = -60.0  # a faint noise floor under everything (no recording is digital silence)
PAUSES = (0.3, 0.6, 1.0, 1.8, 0.4, 3.0, 0.8, 0.2, 1.2, 0.5, 2.2)  # seconds after each sentence, cycled


def speak(text: str, work: Path, voice: str | None = None) -> np.ndarray:
    """espeak-ng saying ``text``, 16 kHz mono, trimmed of silence, at SPEECH_DBFS voiced RMS."""
    work.mkdir(parents=True, exist_ok=True)
    wav = work / f"say-{abs(hash((text, voice)))}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), *(["-v", voice] if voice else []), text], check=True,
                   capture_output=True)  # fmt: skip
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"],
                         check=True, capture_output=True).stdout  # fmt: skip
    x = np.frombuffer(raw, np.float32)
    voiced = np.flatnonzero(np.abs(x) > 0.01)
    x = x[voiced[0] : voiced[-1] + 1]
    frames = x[: len(x) // 320 * 320].reshape(-1, 320).astype(np.float64)  # 20 ms
    rms = np.sqrt((frames**2).mean(axis=1))
    level = float(np.sqrt((rms[rms > 0.1 * rms.max()] ** 2).mean()))
    return (x / level * 10 ** (SPEECH_DBFS / 20)).astype(np.float32)


def make_recording(items, work: Path, seed: int = 0, voice: str | None = None):
    """Audio from ``items``: ("say", text), ("pause", s), ("music", s) in order.

    Returns (16 kHz float32 audio, [(start, end, text)] of each sentence said,
    [(start, end, kind)] of each pause, silence or music), times in seconds."""
    parts: list[np.ndarray] = []
    said: list[tuple[float, float, str]] = []
    quiet: list[tuple[float, float, str]] = []
    pos = 0
    for kind, arg in items:
        if kind == "say":
            x = speak(arg, work, voice)
            said.append((pos / RATE, (pos + len(x)) / RATE, arg))
        elif kind == "music":
            x = synth_music(arg, seed=seed)
            quiet.append((pos / RATE, pos / RATE + arg, "music"))
        else:
            x = np.zeros(int(round(arg * RATE)), np.float32)
            quiet.append((pos / RATE, pos / RATE + arg, "silence"))
        parts.append(x)
        pos += len(x)
    audio = np.concatenate(parts)
    audio += (np.random.default_rng(seed).standard_normal(len(audio)) * 10 ** (HISS_DBFS / 20)).astype(np.float32)
    return audio, said, quiet


def bench_items(repeat: int = 1) -> list[tuple[str, object]]:
    """~3.5 min: every sentence of bench.broadcast and bench.asr_quality, varied pauses, a
    15 s silence and 15 s of music."""
    sentences = list(CALM_SENTENCES + EXTRA_SENTENCES) * repeat
    items: list[tuple[str, object]] = [("pause", 1.0)]
    for i, s in enumerate(sentences):
        items += [("say", s), ("pause", PAUSES[i % len(PAUSES)])]
        if i % len(CALM_SENTENCES + EXTRA_SENTENCES) == 12:
            items += [("pause", 15.0)]
        if i % len(CALM_SENTENCES + EXTRA_SENTENCES) == 25:
            items += [("music", 15.0), ("pause", 0.5)]
    return items + [("pause", 1.0)]


def _timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def main(argv: list[str] | None = None) -> None:
    from detectors.assets import AssetDirs
    from detectors.speech import SpeechOptions, StreamingTranscriber, load_whisper_model
    from detectors.transcribe import transcribe_recording

    p = argparse.ArgumentParser(prog="python -m bench.vod_asr", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--repeat", type=int, default=1, help="say every sentence this many times (longer audio)")
    p.add_argument("--model", default="", help="a model's name (speech.model): bundled tiny.en, or a folder in --models-dir")
    p.add_argument("--models-dir", default="", help="the folder of named CTranslate2 Whisper models (livecut up --models-dir)")
    a = p.parse_args(argv)

    opts = SpeechOptions(model=a.model, cpu_threads=1)
    work = Path(tempfile.mkdtemp(prefix="livecut-vod-asr-"))
    audio, said, quiet = make_recording(bench_items(a.repeat), work)
    script = " ".join(text for _, _, text in said)
    duration = len(audio) / RATE
    model = load_whisper_model(opts, AssetDirs(models_dir=a.models_dir))
    from detectors.vad import load_vad

    load_vad()  # loaded once per process, not timed
    list(model.transcribe(audio[: 5 * RATE], language=opts.language, vad_filter=False)[0])  # warm up, not timed

    def live():
        tr = StreamingTranscriber(model, opts)
        step = RATE // 10
        words = []
        for i in range(0, len(audio), step):
            words += tr.push(i / RATE, audio[i : i + step])
        return words + tr.flush(), tr.chunks

    def plain():
        segments, _ = model.transcribe(audio, language=opts.language, vad_filter=True, word_timestamps=True)
        words = [w for s in segments for w in (s.words or ())]
        return [(float(w.start), float(w.end), w.word.strip()) for w in words], None

    def recording(batch_size: int):
        stats: dict = {}
        words = transcribe_recording(model, audio, 0.0, opts, batch_size=batch_size, stats=stats)
        return words, stats["whisper_calls"]

    rows = {}
    texts = {}
    for name, fn in (("live (0.1 s pushes)", live), ("plain transcribe (vad_filter)", plain),
                     ("transcribe_recording (batch 8)", lambda: recording(8)),
                     ("transcribe_recording (batch 1)", lambda: recording(1))):  # fmt: skip
        (words, calls), cpu, wall = _timed(fn)
        triples = [(w.start, w.end, w.text) if hasattr(w, "text") else w for w in words]
        text = " ".join(t for _, _, t in triples)
        texts[name] = [t for _, _, t in triples]
        in_quiet = [t for s, _, t in triples if any(a0 + 0.5 <= s < b0 - 0.5 for a0, b0, k in quiet if b0 - a0 >= 10)]
        rows[name] = {
            "words": len(triples),
            "wer": round(wer(script, text), 4),
            "words_in_silence_or_music": len(in_quiet),
            "whisper_calls": calls,
            "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2),
            "audio_s_per_cpu_s": round(duration / cpu, 1),
            "audio_s_per_wall_s": round(duration / wall, 1),
            "cpu_s_per_audio_s": round(cpu / duration, 4),
        }
    base = rows["live (0.1 s pushes)"]
    for r in rows.values():
        r["speed_vs_live_cpu"] = round(r["audio_s_per_cpu_s"] / base["audio_s_per_cpu_s"], 2)
        r["speed_vs_live_wall"] = round(r["audio_s_per_wall_s"] / base["audio_s_per_wall_s"], 2)
        r["words_vs_live"] = round(r["words"] / max(1, base["words"]), 3)
    same = texts["transcribe_recording (batch 8)"] == texts["transcribe_recording (batch 1)"]
    result = {"batched_words_same_as_one_by_one": same, "audio_s": round(duration, 1), "words_spoken": len(script.split()), "model": opts.model or "tiny.en",
              "cpu_threads": 1, "rows": rows}  # fmt: skip
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"\n{duration:.0f} s of espeak-ng speech, {len(script.split())} words spoken, "
          f"{result['model']}, cpu_threads=1")  # fmt: skip
    head = (f"{'':<30} {'words':>5} {'WER':>6} {'quiet':>5} {'calls':>5} {'CPU-s/aud-s':>11} {'aud-s/CPU-s':>11} "
            f"{'aud-s/wall-s':>12} {'x live CPU':>10} {'x live wall':>11}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{name:<30} {r['words']:>5} {r['wer']:>6.3f} {r['words_in_silence_or_music']:>5} "
              f"{'-' if r['whisper_calls'] is None else r['whisper_calls']:>5} {r['cpu_s_per_audio_s']:>11.4f} "
              f"{r['audio_s_per_cpu_s']:>11.1f} {r['audio_s_per_wall_s']:>12.1f} {r['speed_vs_live_cpu']:>10.2f} "
              f"{r['speed_vs_live_wall']:>11.2f}")  # fmt: skip
    print("\nquiet: words emitted inside the long silence or the music")
    print(f"batched decoding gives the same words as one call per window: {same}")


if __name__ == "__main__":
    main()
