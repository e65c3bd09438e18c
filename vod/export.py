"""Rendering a clip export with PyAV: reframed to 9:16, 1:1 or 16:9, captions burned in,
loudness-normalised, H.264/AAC in a fast-start MP4; and the Ray task that runs it.

The pipeline (``render``), in three passes over the clip file:

1. ``reframe: speaker`` only: decode every frame and look for faces on one every
   ``sample_every`` seconds (``vod.faces``, on a gray copy ``detect_height`` pixels tall);
   ``vod.reframe.crop_path`` turns the faces into the crop's position per frame;
2. audio: decoded and resampled to 48 kHz stereo, measured (FFmpeg's ``ebur128``), then
   ``loudnorm`` in linear mode with those measurements, so the whole clip is lifted or
   lowered to -23 LUFS integrated (EBU R128) and keeps its dynamics; the filter falls back
   to its dynamic mode by itself when the gain would push true peaks above -1 dBTP.
   Encoded to AAC up front (a few hundred KB) and interleaved with the video as it is muxed;
3. video: each frame cropped and scaled in one ``cv2.warpAffine`` (sub-pixel pans), or
   letterboxed over a blurred, zoomed copy of itself; the caption of the moment blended in
   (``vod.caption_images``); libx264, ``movflags=+faststart``.

``rendering`` is the render as a generator of its progress: the fraction of the frame passes
done (1 and 3; 2 is short), then 1 once the file is whole. The Ray task streams it to the
scheduler (a streaming generator task: each fraction, then the ``RenderResult``); ``render``
runs it through for callers that do not watch.

Times are seconds from the clip's first video frame, as the clip's words are.
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Generator, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import msgspec
import numpy as np
import ray

from records.wire import ExportOptions, Word
from vod.caption_images import CaptionStyle, CaptionTrack, blend
from vod.reframe import CropPath, ReframeOptions, crop_path

__all__ = ["FrameProgress", "RenderResult", "output_size", "render", "rendering", "submit_export"]

ASPECTS = {"9:16": 9 / 16, "1:1": 1.0, "16:9": 16 / 9}
TARGET_LUFS = -23.0  # EBU R128 integrated loudness
TARGET_TP = -1.0  # dBTP
TARGET_LRA = 11.0  # LU, for loudnorm's dynamic fallback
AUDIO_RATE = 48_000
AUDIO_BITRATE = 128_000
X264 = {"preset": "veryfast", "crf": "21", "profile": "high"}
BLUR_SHRINK = 8  # the letterbox background is blurred at 1/8 of the output size (cheap, and soft enough)
BACKGROUND_DIM = 0.6
EXPORT_RETRIES = 2  # worker losses an export survives
MAX_FPS = 120  # a stream's claimed rate above this (a millisecond time base) is not its frame rate
PROGRESS_POINTS = 100  # a render tells its progress in whole points of this many: about a hundred times


class RenderResult(msgspec.Struct):
    width: int
    height: int
    duration: float  # seconds of video
    frames: int
    cpu: float  # CPU seconds of this process while rendering
    wide_share: float  # of the frames shown letterboxed (speaker reframing with nobody or a group)


class FrameProgress:
    """Frames done over frames expected, as the fraction of a render done in whole points
    (``PROGRESS_POINTS``): told only when it reached a new point, and below 1 until the file
    is whole (a decoder may give a frame more than the packets promised)."""

    def __init__(self, expected: int):
        self.expected = max(1, expected)
        self.done = 0
        self.told = 0  # points

    def advance(self) -> float | None:
        """One more frame done: the fraction to tell, or None."""
        self.done += 1
        points = min(self.done * PROGRESS_POINTS // self.expected, PROGRESS_POINTS - 1)
        if points <= self.told:
            return None
        self.told = points
        return points / PROGRESS_POINTS


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def output_size(src_w: int, src_h: int, aspect: str, max_height: int) -> tuple[int, int]:
    """(width, height) of the export: ``max_height`` tall at most, and no taller than the
    source shows it (a 9:16 frame may be as tall as 16/9 of the source's height, the height a
    letterboxed 16:9 picture has its full width in)."""
    ratio = ASPECTS[aspect]
    tallest = src_h * (16 / 9 if ratio < 1 else 1.0)
    height = _even(min(max_height, tallest))
    return _even(height * ratio), height


def crop_size(src_w: int, src_h: int, aspect: str) -> tuple[float, float]:
    """The largest (w, h) of the export's aspect inside the source."""
    ratio = ASPECTS[aspect]
    return (src_h * ratio, float(src_h)) if src_w / src_h > ratio else (float(src_w), src_w / ratio)


def compose_crop(rgb: np.ndarray, x: float, crop_w: float, crop_h: float, out_w: int, out_h: int) -> np.ndarray:
    """The crop at left edge ``x`` (vertically centred), scaled to the output, in one warp."""
    scale = out_w / crop_w
    y = (rgb.shape[0] - crop_h) / 2
    matrix = np.array([[scale, 0.0, -x * scale], [0.0, scale, -y * scale]])
    return cv2.warpAffine(rgb, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def compose_wide(rgb: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """The whole picture scaled to fit, over a blurred, dimmed copy zoomed to fill."""
    src_h, src_w = rgb.shape[:2]
    fit = min(out_w / src_w, out_h / src_h)
    fg_w, fg_h = _even(src_w * fit), _even(src_h * fit)
    fg_w, fg_h = min(fg_w, out_w), min(fg_h, out_h)
    foreground = cv2.resize(rgb, (fg_w, fg_h), interpolation=cv2.INTER_AREA if fit < 1 else cv2.INTER_LINEAR)
    if (fg_w, fg_h) == (out_w, out_h):
        return foreground
    cw, ch = crop_size(src_w, src_h, "9:16" if out_w < out_h else ("1:1" if out_w == out_h else "16:9"))
    x0, y0 = int((src_w - cw) / 2), int((src_h - ch) / 2)
    small = (max(2, out_w // BLUR_SHRINK), max(2, out_h // BLUR_SHRINK))
    background = cv2.resize(rgb[y0:y0 + int(ch), x0:x0 + int(cw)], small, interpolation=cv2.INTER_AREA)
    background = cv2.GaussianBlur(background, (0, 0), sigmaX=max(1.0, small[0] / 40))
    background = (background.astype(np.uint16) * int(BACKGROUND_DIM * 256) >> 8).astype(np.uint8)
    frame = cv2.resize(background, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    top, left = (out_h - fg_h) // 2, (out_w - fg_w) // 2
    frame[top:top + fg_h, left:left + fg_w] = foreground
    return frame


# -- passes ------------------------------------------------------------------------------

def _video_stream(container):
    if not container.streams.video:
        raise ValueError("the clip has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _faces(source: str, options: ReframeOptions, threads: int,
           progress: FrameProgress) -> Generator[float, None, tuple[np.ndarray, list[tuple[float, np.ndarray]]]]:
    """Pass 1: every frame's time (from the first frame), and the faces of the sampled ones in
    source pixels; yields the render's progress as it goes."""
    from vod.faces import FaceDetector

    detector = FaceDetector(options.min_face)
    times, samples = [], []
    next_sample, t0 = 0.0, None
    with av.open(source) as container:
        stream = _video_stream(container)
        stream.codec_context.thread_count = threads
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            t0 = frame.time if t0 is None else t0
            t = frame.time - t0
            times.append(t)
            if t + 1e-6 >= next_sample:
                height = min(options.detect_height, frame.height)
                width = _even(frame.width * height / frame.height)
                gray = frame.reformat(width=width, height=height, format="gray").to_ndarray()
                samples.append((t, detector(gray) * (frame.height / height)))
                next_sample = t + options.sample_every
            if (told := progress.advance()) is not None:
                yield told
    return np.array(times), samples


def _pcm(source: str, t0: float, duration: float) -> np.ndarray | None:
    """The clip's audio from ``t0`` for ``duration`` seconds as 48 kHz stereo float32 (2, n),
    silence-padded where the audio starts late or ends early; None without an audio stream."""
    with av.open(source) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        chunks, start = [], None
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                if start is None and out.time is not None:
                    start = out.time
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    total = int(round(duration * AUDIO_RATE))
    if not chunks:
        return np.zeros((2, total), np.float32)
    pcm = np.concatenate(chunks, axis=1).astype(np.float32)
    offset = int(round(((start if start is not None else t0) - t0) * AUDIO_RATE))
    if offset > 0:
        pcm = np.concatenate((np.zeros((2, offset), np.float32), pcm), axis=1)
    elif offset < 0:
        pcm = pcm[:, -offset:]
    pcm = pcm[:, :total]
    if pcm.shape[1] < total:
        pcm = np.concatenate((pcm, np.zeros((2, total - pcm.shape[1]), np.float32)), axis=1)
    return np.ascontiguousarray(pcm)


def _filter(pcm: np.ndarray, chain: list[tuple[str, str]]) -> list[av.AudioFrame]:
    """Run 48 kHz stereo ``pcm`` through an FFmpeg audio filter chain; the frames out."""
    graph = av.filter.Graph()
    nodes = [graph.add_abuffer(format="fltp", sample_rate=AUDIO_RATE, layout="stereo",
                               time_base=Fraction(1, AUDIO_RATE))]
    nodes += [graph.add(name, args) for name, args in chain]
    nodes.append(graph.add("abuffersink"))
    graph.link_nodes(*nodes).configure()
    frames: list[av.AudioFrame] = []

    def drain() -> None:
        while True:
            try:
                frames.append(graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return

    for i in range(0, pcm.shape[1], 4096):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + 4096]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, i, Fraction(1, AUDIO_RATE)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return frames


def loudness(pcm: np.ndarray) -> dict[str, float]:
    """EBU R128 measurements of 48 kHz stereo ``pcm`` by FFmpeg's ``ebur128``: integrated
    ``I`` (LUFS), ``LRA`` (LU) and true peak ``TP`` (dBTP)."""
    frames = _filter(pcm, [("ebur128", "metadata=1:peak=true")])
    meta = frames[-1].metadata if frames else {}
    peak = float(meta.get("lavfi.r128.true_peak", 0.0))
    return {
        "I": float(meta.get("lavfi.r128.I", -70.0)),
        "LRA": float(meta.get("lavfi.r128.LRA", 0.0)),
        "TP": 20 * np.log10(peak) if peak > 0 else -99.0,
    }


def normalise(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` brought to ``TARGET_LUFS`` by ``loudnorm`` (linear with measured values)."""
    m = loudness(pcm)
    if m["I"] <= -70.0:  # silence (below the absolute gate): nothing to normalise
        return pcm
    # linear mode needs every measured_* set; ebur128 does not report the relative gate, and
    # loudnorm only checks that one was given, so the gate's definition (I - 10 LU) stands in
    args = (f"I={TARGET_LUFS}:TP={TARGET_TP}:LRA={TARGET_LRA}:measured_I={m['I']:.2f}:measured_LRA={m['LRA']:.2f}:"
            f"measured_TP={m['TP']:.2f}:measured_thresh={m['I'] - 10:.2f}:linear=true")
    frames = _filter(pcm, [("loudnorm", args), ("aresample", str(AUDIO_RATE)),
                           ("aformat", "sample_fmts=fltp:channel_layouts=stereo")])
    out = np.concatenate([f.to_ndarray() for f in frames], axis=1).astype(np.float32)
    # loudnorm keeps the length up to a resampler's rounding: keep the clip's exactly
    n = pcm.shape[1]
    return np.ascontiguousarray(out[:, :n] if out.shape[1] >= n else np.pad(out, ((0, 0), (0, n - out.shape[1]))))


def _audio_packets(output, pcm: np.ndarray) -> tuple[object, deque]:
    stream = output.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
    stream.bit_rate = AUDIO_BITRATE
    packets: deque = deque()
    for i in range(0, pcm.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + 1024]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, i, Fraction(1, AUDIO_RATE)
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return stream, packets


# -- the render --------------------------------------------------------------------------

def render(
    source: str,
    dest: str,
    options: ExportOptions,
    words: list[Word],
    *,
    threads: int = 1,
    reframe: ReframeOptions | None = None,
    style: CaptionStyle | None = None,
) -> RenderResult:
    """Render ``source`` (a clip's MP4) to ``dest`` as ``options`` say; the file appears
    whole (written beside it, then renamed). ``rendering``, its progress unread."""
    steps = rendering(source, dest, options, words, threads=threads, reframe=reframe, style=style)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def rendering(
    source: str,
    dest: str,
    options: ExportOptions,
    words: list[Word],
    *,
    threads: int = 1,
    reframe: ReframeOptions | None = None,
    style: CaptionStyle | None = None,
) -> Generator[float, None, RenderResult]:
    """``render`` as a generator: yields the fraction done (rising, in whole points of
    ``PROGRESS_POINTS``, below 1 until the file is whole, then 1), and returns the
    ``RenderResult``."""
    started = time.process_time()
    reframe = reframe or ReframeOptions()
    cv2.setNumThreads(threads)
    with av.open(source) as probe_container:
        vs = _video_stream(probe_container)
        src_w, src_h = vs.codec_context.width, vs.codec_context.height
        rate = next((Fraction(r) for r in (vs.average_rate, vs.guessed_rate) if r and 1 <= r <= MAX_FPS), Fraction(30))
    out_w, out_h = output_size(src_w, src_h, options.aspect, options.max_height)
    crop_w, crop_h = crop_size(src_w, src_h, options.aspect)
    t0, span, packets = _video_span(source)
    follow = options.reframe == "speaker" and crop_w < src_w - 1
    # the face pass decodes every frame too, and costs about what encoding them does (README, Figures)
    progress = FrameProgress(packets * (2 if follow else 1))

    path: CropPath | None = None
    if follow:
        times, samples = yield from _faces(source, reframe, threads, progress)
        path = crop_path(times, samples, src_w, crop_w, reframe)
    captions = CaptionTrack(words, out_w, out_h, options.captions, style)

    part = Path(f"{dest}.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    frames = wide_frames = 0
    duration = 0.0
    with av.open(source) as container, av.open(str(part), "w", format="mp4",
                                               options={"movflags": "+faststart"}) as output:
        stream = _video_stream(container)
        stream.codec_context.thread_count = threads
        video = output.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = out_w, out_h, "yuv420p"
        video.codec_context.time_base = 1 / rate
        video.options = {**X264, "threads": str(threads)}
        frame_time = float(1 / rate)
        pcm = _pcm(source, t0, span)
        audio, pending = (None, deque()) if pcm is None else _audio_packets(output, normalise(pcm))

        def mux(packets) -> None:
            for packet in packets:
                if audio is not None and packet.pts is not None:
                    until = float(packet.pts * packet.time_base)
                    while pending and float(pending[0].pts * pending[0].time_base) <= until:
                        output.mux(pending.popleft())
                output.mux(packet)

        # same size, nothing cropped: frames without a caption go to the encoder as they are
        untouched = (out_w, out_h) == (src_w, src_h) and crop_w >= src_w - 1 and crop_h >= src_h - 1
        last_pts = -1
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            t = frame.time - t0
            overlay = captions.at(t)
            wide = options.reframe == "none" or (path is not None and path.wide[min(frames, len(path) - 1)])
            wide_frames += wide
            if untouched and overlay is None:  # the picture as decoded: no colour conversion
                out = frame
                out.pict_type = av.video.frame.PictureType.NONE  # the encoder picks its own keyframes
            else:
                rgb = frame.to_ndarray(format="rgb24")
                if wide:
                    picture = compose_wide(rgb, out_w, out_h)
                else:
                    x = path.x[min(frames, len(path) - 1)] if path is not None else (src_w - crop_w) / 2
                    picture = compose_crop(rgb, x, crop_w, crop_h, out_w, out_h)
                if overlay is not None:
                    blend(picture, overlay)
                out = av.VideoFrame.from_ndarray(picture, format="rgb24")
            pts = max(last_pts + 1, int(round(t / video.codec_context.time_base)))
            out.pts, out.time_base, last_pts = pts, video.codec_context.time_base, pts
            mux(video.encode(out))
            frames += 1
            duration = t + frame_time
            if (told := progress.advance()) is not None:
                yield told
        mux(video.encode(None))
        while pending:
            output.mux(pending.popleft())
    os.replace(part, dest)
    yield 1.0
    return RenderResult(width=out_w, height=out_h, duration=round(duration, 3), frames=frames,
                        cpu=round(time.process_time() - started, 3),
                        wide_share=round(wide_frames / frames, 3) if frames else 0.0)


def _video_span(source: str) -> tuple[float, float, int]:
    """(first frame's time, seconds to the last frame's end, packets: frames to expect) from
    the packets alone."""
    first, end, count = None, None, 0
    with av.open(source) as container:
        stream = _video_stream(container)
        for packet in container.demux(stream):
            if packet.pts is None or packet.is_discard:
                continue
            start = float(packet.pts * packet.time_base)
            stop = start + float((packet.duration or 0) * packet.time_base)
            first = start if first is None else min(first, start)
            end = stop if end is None else max(end, stop)
            count += 1
    if first is None:
        raise ValueError("the clip has no video frames")
    return first, end - first, count


# -- the Ray task ------------------------------------------------------------------------

def _task(source: str, dest: str, options: ExportOptions, words: list[Word],
          threads: int) -> Iterator[float | RenderResult]:
    # a Ray generator task cannot return a value: the result is its last item
    result = yield from rendering(source, dest, options, words, threads=threads)
    yield result


_remote_render = ray.remote(_task)


def submit_export(export_id: str, source: str, dest: str, options: ExportOptions, words: list[Word], *,
                  cpus: int = 1, gpus: float = 0.0) -> ray.ObjectRefGenerator:
    """Start an export's render as a Ray streaming generator task (``cpus`` CPUs, and as many
    encoder threads); returns its ObjectRefGenerator: a ref to each progress fraction as the
    render tells it, then one to the ``RenderResult`` (``async for``, then await each ref).
    Ray retries it when its worker dies."""
    return (
        _remote_render
        .options(num_returns="streaming", num_cpus=cpus, num_gpus=gpus, max_retries=EXPORT_RETRIES,
                 name=f"export-{export_id}")
        .remote(source, dest, options, words, cpus)
    )
