"""Streaming ASR quality and cost: WER, commit latency and CPU of ``StreamingTranscriber``.

Generates a labelled speech broadcast (espeak-ng sentences at the broadcast's level and
pauses, a long silence, synthetic music, a crowd roar over speech and a stretch of speech with
short pauses only), then transcribes it

* whole-file, once, with faster-whisper's own offline settings (beam 5, VAD filter,
  conditioning on previous text): the best the model does with all the audio at hand;
* streaming, fed in 100 ms pushes as the stream actor feeds it,

and prints the word error rate of each against the script, of streaming against whole-file,
the commit latency (a word's end → the stream time at which it was committed, i.e. how much
audio had been pushed when ``push`` returned it), CPU seconds per stream second and whisper
calls per minute, plus any words emitted during the silence and the music.

    .venv/bin/python -m bench.asr_quality [--step 2.5] [--model NAME --models-dir DIR] [--repeat 2] [--set KEY=VALUE]
    .venv/bin/python -m bench.asr_quality --streams 8 [--asr-threads 2] [--json]

``--streams N`` compares the two ASR designs on N streams at once, each fed in real time
(starts staggered by ``--stagger`` seconds) from its own thread, as N stream actors would:
``actor``, each transcriber with its own model (one CPU thread each), and ``node``, every
transcriber calling one shared :class:`stream_actor.asr_server.AsrServer` that batches the
streams' calls (a local Ray instance). It prints, per design, the mean WER against the script
and against whole-file transcription, commit latency, CPU-s per stream-second (the model
server's process included) and the server's mean batch, then node's figures as ratios of
actor's.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

from bench.stats import percentile

RATE = 16000

_NUMBERS = {str(i): w for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}  # fmt: skip


def words_of(text: str) -> list[str]:
    """Normalised words for WER: lower case, no punctuation, small numbers spelled out."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return [_NUMBERS.get(w, w) for w in text.replace("'", "").split()]


def wer(reference: str | list[str], hypothesis: str | list[str]) -> float:
    """Word error rate: word-level Levenshtein distance over the reference's length."""
    ref = words_of(reference) if isinstance(reference, str) else reference
    hyp = words_of(hypothesis) if isinstance(hypothesis, str) else hypothesis
    if not ref:
        return float(len(hyp) > 0)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def synth_music(seconds: float, seed: int = 0, dbfs: float = -20.0) -> np.ndarray:
    """Music-like audio at 16 kHz: chords of harmonic tones, an eighth-note melody and a
    kick/hi-hat beat, at ``dbfs`` RMS. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    out = np.zeros(n)
    chords = ((220.0, 277.18, 329.63), (196.0, 246.94, 293.66), (174.61, 220.0, 261.63), (196.0, 246.94, 329.63))
    bar = 2.0
    for k in range(int(np.ceil(seconds / bar))):
        a, b = int(k * bar * RATE), min(n, int((k + 1) * bar * RATE))
        tt = np.arange(b - a) / RATE
        env = np.minimum(1.0, tt / 0.05) * np.exp(-tt * 0.8)
        chord = chords[k % len(chords)]
        for f in chord:
            for h in range(1, 6):
                out[a:b] += env * np.sin(2 * np.pi * f * h * tt + rng.uniform(0, 2 * np.pi)) / h**1.5
        for j in range(8):  # melody in eighth notes
            s0 = a + int(j * 0.25 * RATE)
            s1 = min(b, s0 + int(0.22 * RATE))
            if s1 <= s0:
                continue
            f = chord[j % 3] * 2 * (1.5 if j % 4 == 3 else 1.0)
            u = np.arange(s1 - s0) / RATE
            out[s0:s1] += 0.6 * np.exp(-u * 6) * (np.sin(2 * np.pi * f * u) + 0.3 * np.sin(4 * np.pi * f * u))
    for k in range(int(seconds / 0.5)):  # kick on the beat, hi-hat off the beat
        s0 = int(k * 0.5 * RATE)
        u = np.arange(min(n - s0, int(0.15 * RATE))) / RATE
        out[s0 : s0 + len(u)] += 1.5 * np.sin(2 * np.pi * (60 + 90 * np.exp(-u * 30)) * u) * np.exp(-u * 25)
        h0 = s0 + int(0.25 * RATE)
        m = max(0, min(n - h0, int(0.05 * RATE)))
        out[h0 : h0 + m] += 0.3 * rng.standard_normal(m) * np.exp(-np.arange(m) / RATE * 80)
    out *= 10 ** (dbfs / 20) / np.sqrt((out**2).mean())
    return out.astype(np.float32)


class Script(msgspec.Struct):
    """What was said and where: the reference for the WER."""

    text: str  # every sentence spoken, in order
    silence: tuple[float, float]  # a long silence (no words may be emitted in it)
    music: tuple[float, float]  # music only (no words may be emitted in it)
    duration: float


# More varied sentences than the broadcast's, so the WER is measured on ~600 different words.
EXTRA_SENTENCES = (
    "Let me switch to the other camera so you can see the whole desk.",
    "The storm last night knocked out power for about three hours.",
    "If you missed the beginning, the recording will be online tomorrow.",
    "We are going to try the harder difficulty this time around.",
    "My cat keeps walking across the keyboard whenever I start recording.",
    "The bridge on the left is faster, but the guards are watching it.",
    "Somebody in the chat asked about my microphone, it is a cheap one.",
    "Let us gather some wood before the sun goes down.",
    "The score is tied and there are only two minutes left.",
    "I forgot to save the game, so we lost the last twenty minutes.",
    "Please be kind to each other in the comments.",
    "The new patch changed how the shields recharge after a fight.",
    "We should probably build a second base near the mountains.",
    "That was a very close call, the health bar is almost empty.",
    "Tomorrow I will be playing with two friends from the other team.",
    "The soundtrack of this game was recorded with a real orchestra.",
    "Our first goal is to find the key hidden somewhere in the castle.",
    "I have been drinking too much coffee during these long sessions.",
    "The map is much bigger than it looks from up here.",
    "Give me a second, I need to adjust the brightness of the screen.",
    "This weapon is slow, but it does a lot of damage to armor.",
    "Last week we reached the final boss and lost at the very end.",
    "I am going to read a few messages from the chat now.",
    "The train leaves the station every fifteen minutes in the morning.",
)


def make_speech_broadcast(work: Path, repeat: int = 1) -> tuple[np.ndarray, Script]:
    """16 kHz mono audio of a calm broadcast and its script (see the module docstring)."""
    from bench.broadcast import CALM_SENTENCES, DEFAULT_KEYWORD, SAMPLE_RATE, SPEECH_DBFS, _db, _roar, _speak

    def to16k(x: np.ndarray) -> np.ndarray:
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "-",
             "-ar", str(RATE), "-f", "f32le", "-"],
            input=np.ascontiguousarray(x, np.float32).tobytes(), check=True, capture_output=True,
        ).stdout  # fmt: skip
        return np.frombuffer(raw, np.float32).copy()

    work.mkdir(parents=True, exist_ok=True)
    sentences = CALM_SENTENCES + EXTRA_SENTENCES
    gain = _db(SPEECH_DBFS)
    voices = [to16k(_speak(s, work / f"s{i}.wav")) * gain for i, s in enumerate(sentences)]
    keyword = to16k(_speak(DEFAULT_KEYWORD, work / "kw.wav", excited=True)) * gain * _db(2.0)
    roar = to16k(_roar(2.5, seed=1000)) * gain * _db(15.0)
    rng = np.random.default_rng(7)
    parts: list[np.ndarray] = [np.zeros(RATE, np.float32)]
    said: list[str] = []
    pos = RATE

    def gap(seconds: float) -> None:
        nonlocal pos
        parts.append(np.zeros(int(seconds * RATE), np.float32))
        pos += int(seconds * RATE)

    def say(i: int, pause: tuple[float, float]) -> None:
        nonlocal pos
        parts.append(voices[i].copy())
        said.append(sentences[i])
        pos += len(voices[i])
        gap(float(rng.uniform(*pause)))

    calm, extra = len(CALM_SENTENCES), len(EXTRA_SENTENCES)
    for _ in range(repeat):
        for i in range(calm // 2):  # calm speech with the broadcast's natural pauses
            say(i, (0.4, 1.1))
        parts.append(keyword.copy())
        said.append(DEFAULT_KEYWORD)
        pos += len(keyword)
        gap(1.0)
        for i in range(calm, calm + extra // 2):
            say(i, (0.4, 1.1))
    silence = (pos / RATE, pos / RATE + 20.0)
    gap(20.0)  # a long silence: no "thank you", no drift after it
    music = (pos / RATE, pos / RATE + 15.0)
    parts.append(synth_music(15.0))
    pos += 15 * RATE
    gap(0.5)
    for _ in range(repeat):
        start = pos
        for i in range(calm + extra // 2, calm + extra):  # talking on with short pauses only
            say(i, (0.1, 0.3))
        roar_at = start + (pos - start) // 3  # a roar over the speech
        for i in range(calm // 2, calm):
            say(i, (0.4, 1.1))
    gap(2.0)
    audio = np.concatenate(parts)
    audio[roar_at : roar_at + len(roar)] += roar[: len(audio) - roar_at]
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio, Script(text=" ".join(said), silence=silence, music=music, duration=len(audio) / RATE)


def whole_file(model, audio: np.ndarray, language: str = "en", greedy: bool = False) -> str:
    """faster-whisper on the whole file: its offline defaults (beam 5, VAD filter, conditioning
    on previous text), or ``greedy`` decoding the way the streaming transcriber decodes."""
    if greedy:
        segments, _ = model.transcribe(audio, language=language, beam_size=1, temperature=0, vad_filter=True,
                                       condition_on_previous_text=False)  # fmt: skip
    else:
        segments, _ = model.transcribe(audio, language=language, beam_size=5, vad_filter=True)
    return " ".join(s.text.strip() for s in segments)


def streaming(transcriber, audio: np.ndarray, chunk: float = 0.1, behind=None, real_time: bool = False,
              delay: float = 0.0) -> tuple[list, list[float], float]:  # fmt: skip
    """Feed ``audio`` in ``chunk``-second pushes: (words, commit latencies, CPU seconds of
    the process while pushing; meaningless with other streams running). As fast as it goes, reporting ``behind(seconds fed)`` as the backlog; or,
    with ``real_time``, at the wall clock's pace after ``delay`` seconds, reporting the
    backlog measured."""
    time.sleep(delay)
    step = int(chunk * RATE)
    words, latency = [], []
    cpu = 0.0
    started_at = time.monotonic()
    for i in range(0, len(audio), step):
        piece = audio[i : i + step]
        fed = (i + len(piece)) / RATE
        if real_time:
            if (wait := fed - (time.monotonic() - started_at)) > 0:
                time.sleep(wait)
            late = {"behind": max(0.0, (time.monotonic() - started_at) - fed)}
        else:
            late = {} if behind is None else {"behind": behind(fed)}
        started = time.process_time()
        new = transcriber.push(i / RATE, piece, **late)
        cpu += time.process_time() - started
        words += new
        latency += [fed - w.end for w in new]
    started = time.process_time()
    tail = transcriber.flush()
    cpu += time.process_time() - started
    words += tail
    latency += [len(audio) / RATE - w.end for w in tail]
    return words, latency, cpu


def compare_designs(audio: np.ndarray, script, whole: str, opts, n: int, asr_threads: int, asr_workers: int,
                    stagger: float) -> dict:  # fmt: skip
    """N real-time streams through each ASR design (see the module docstring)."""
    import threading

    import psutil
    import ray

    from detectors.speech import StreamingTranscriber, load_whisper_model
    from stream_actor.asr_client import RemoteWhisper, server_for
    from stream_actor.asr_server import AsrServerOptions

    def run(models) -> list[tuple[list, list[float]]]:
        results: list = [None] * n
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, streaming(StreamingTranscriber(models[i], opts), audio, real_time=True, delay=i * stagger)[:2]))
            for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    out: dict = {}
    me = psutil.Process()
    # actor: one model per stream, one CPU thread each (SpeechOptions.cpu_threads)
    models = [load_whisper_model(opts) for _ in range(n)]
    cpu0 = sum(me.cpu_times()[:2])
    results = run(models)
    out["actor"] = {"cpu": sum(me.cpu_times()[:2]) - cpu0, "results": results}
    del models
    # node: one server, batched
    ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, namespace="livecut-bench")
    try:
        server = server_for(AsrServerOptions(model=opts.model, cpu_threads=asr_threads, workers=asr_workers),
                            ray.get_runtime_context().get_node_id())  # fmt: skip
        server_proc = psutil.Process(ray.get(server.ready.remote()))
        clients = [RemoteWhisper(server, f"stream-{i}") for i in range(n)]
        cpu0 = sum(me.cpu_times()[:2]) + sum(server_proc.cpu_times()[:2])
        results = run(clients)
        cpu1 = sum(me.cpu_times()[:2]) + sum(server_proc.cpu_times()[:2])
        stats = ray.get(server.stats.remote())
        out["node"] = {"cpu": cpu1 - cpu0, "results": results, "mean_batch": stats["mean_batch"],
                       "shed": stats["shed"], "failed": sum(c.failed_calls for c in clients)}  # fmt: skip
    finally:
        ray.shutdown()
    report: dict = {"streams": n, "stream_seconds": script.duration, "asr_threads": asr_threads, "asr_workers": asr_workers}
    for design, got in out.items():
        texts = [" ".join(w.text for w in words) for words, _ in got["results"]]
        latency = [x for _, lat in got["results"] for x in lat]
        report[design] = {
            "wer_script": float(np.mean([wer(script.text, t) for t in texts])),
            "wer_whole": float(np.mean([wer(whole, t) for t in texts])) if whole else None,
            "latency_p50": percentile(latency, 0.5), "latency_p95": percentile(latency, 0.95),
            "cpu_per_stream_second": got["cpu"] / (n * script.duration),
            **{k: v for k, v in got.items() if k in ("mean_batch", "shed", "failed")},
        }  # fmt: skip
    report["ratio_node_to_actor"] = {k: report["node"][k] / report["actor"][k]
                                     for k in ("wer_script", "cpu_per_stream_second") if report["actor"][k]}  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> None:
    from detectors.assets import AssetDirs
    from detectors.speech import SpeechOptions, StreamingTranscriber, load_whisper_model

    p = argparse.ArgumentParser(prog="python -m bench.asr_quality", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="a model's name (speech.model): bundled tiny.en, or a folder in --models-dir")
    p.add_argument("--models-dir", default="", help="the folder of named CTranslate2 Whisper models (livecut up --models-dir)")
    p.add_argument("--step", type=float, default=None, help="override SpeechOptions.step")
    p.add_argument("--repeat", type=int, default=1, help="repeat the speech parts (longer broadcast)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other SpeechOptions field, e.g. --set end_silence=0.7 (repeatable)")
    p.add_argument("--chunk", type=float, default=0.1, help="seconds per push (default 0.1)")
    p.add_argument("--no-whole", action="store_true", help="skip the whole-file transcriptions")
    p.add_argument("--streams", type=int, default=0, help="compare the actor and node ASR designs on this many real-time streams")
    p.add_argument("--asr-threads", type=int, default=1, help="with --streams: CPU threads of the node's ASR server (default 1)")
    p.add_argument("--asr-workers", type=int, default=2, help="with --streams: batches the server decodes at once (default 2)")
    p.add_argument("--stagger", type=float, default=1.7, help="with --streams: seconds between the streams' starts")
    p.add_argument("--json", action="store_true", help="with --streams: print the figures as JSON")
    p.add_argument("--behind", type=float, default=0.0,
                   help="simulate a backlog of this many seconds in the caller's queue (load shedding)")
    a = p.parse_args(argv)

    overrides = {"model": a.model} | ({"step": a.step} if a.step else {})
    for item in a.set:
        key, _, value = item.partition("=")
        overrides[key] = msgspec.json.decode(value)
    opts = msgspec.convert(overrides, SpeechOptions)
    work = Path(tempfile.mkdtemp(prefix="livecut-asr-"))
    audio, script = make_speech_broadcast(work, repeat=a.repeat)
    model = load_whisper_model(opts, AssetDirs(models_dir=a.models_dir))
    duration = script.duration

    rows = []
    whole = ""
    if a.streams:
        whole = whole_file(model, audio, opts.language)
        del model
        report = compare_designs(audio, script, whole, opts, a.streams, a.asr_threads, a.asr_workers, a.stagger)
        if a.json:
            print(json.dumps(report, indent=2))
            return
        print(f"\n{a.streams} real-time streams of a {script.duration:.0f} s broadcast "
              f"({len(words_of(script.text))} words); node server: {a.asr_workers} workers of {a.asr_threads} CPU thread(s)")
        print(f"{'design':<8} {'WER/script':>10} {'WER/whole':>9} {'lat p50':>7} {'p95':>6} {'CPU-s/s':>8} {'batch':>6}")
        for design in ("actor", "node"):
            r = report[design]
            print(f"{design:<8} {r['wer_script']:>10.3f} {r['wer_whole']:>9.3f} {r['latency_p50']:>7.2f} "
                  f"{r['latency_p95']:>6.2f} {r['cpu_per_stream_second']:>8.3f} {r.get('mean_batch', '-'):>6}")
        ratio = report["ratio_node_to_actor"]
        print(f"node / actor: WER x{ratio.get('wer_script', float('nan')):.2f}, "
              f"CPU-s per stream-second x{ratio['cpu_per_stream_second']:.2f}")
        return
    if not a.no_whole:
        started = time.process_time()
        whole = whole_file(model, audio, opts.language)
        rows.append(("whole-file (beam 5)", wer(script.text, whole), None, None, time.process_time() - started, None))
        started = time.process_time()
        greedy = whole_file(model, audio, opts.language, greedy=True)
        rows.append(("whole-file (greedy)", wer(script.text, greedy), wer(whole, greedy), None,
                     time.process_time() - started, None))  # fmt: skip

    tr = StreamingTranscriber(model, opts)
    behind = (lambda fed: a.behind) if a.behind else None
    words, latency, cpu = streaming(tr, audio, a.chunk, behind)
    text = " ".join(w.text for w in words)
    name = f"streaming ({a.chunk * 1000:.0f} ms pushes)" + (f", {a.behind:g} s behind" if a.behind else "")
    rows.append((name, wer(script.text, text), wer(whole, text) if whole else None, latency, cpu, tr.chunks))

    print(f"\n{duration:.0f} s broadcast, {len(words_of(script.text))} words spoken; model "
          f"{opts.model or 'tiny.en (bundled)'}; first_step {opts.first_step} s, step {opts.step} s, "
          f"end_silence {opts.end_silence} s, "
          f"prompt {opts.prompt_chars} chars" + "".join(f", {item}" for item in a.set))
    head = f"{'':<28} {'WER/script':>10} {'WER/whole':>9} {'lat p50':>7} {'p95':>6} {'max':>6} {'CPU-s/s':>7} {'calls/min':>9}"
    print(head)
    print("-" * len(head))
    for name, w_ref, w_whole, lat, cpu_s, calls in rows:
        lat_s = (f"{percentile(lat, 0.5):7.2f} {percentile(lat, 0.95):6.2f} {max(lat):6.2f}" if lat
                 else f"{'-':>7} {'-':>6} {'-':>6}")  # fmt: skip
        print(f"{name:<28} {w_ref:>10.3f} {'-' if w_whole is None else f'{w_whole:.3f}':>9} {lat_s} "
              f"{cpu_s / duration:>7.3f} {'-' if calls is None else f'{calls * 60 / duration:.1f}':>9}")  # fmt: skip
    inside = [w for w in words if any(lo <= w.start < hi for lo, hi in (script.silence, script.music))]
    print(f"\nwords emitted in the 20 s silence or the 15 s music: {len(inside)} {[w.text for w in inside]}")
    print("transcriber counters:", tr.counters())
    if whole:
        print(f"\nwhole-file: {whole}")
    print(f"streaming:  {text}")


if __name__ == "__main__":
    main()
