"""CPU cost of clip exports (``vod.export.render``), in CPU seconds per clip second, at 720p
and 1080p, as ratios against two baselines measured in the same run on the same clip: a
stream-copy remux (what cutting a clip costs) and a plain re-encode at the source size with
the export's encoder settings (what any transcode costs).

The clip is a generated talking head (``bench.talking_head``): a face moving across the
picture, with speech-like audio and a caption word every 0.4 s. One thread throughout, as
one Ray CPU per export.

    .venv/bin/python -m bench.export_cost [--seconds 10] [--json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import msgspec

from bench.talking_head import make_talking_head
from records.wire import ExportOptions, Word
from vod.export import X264, render

CASES = {
    "9:16 speaker + karaoke": ExportOptions(aspect="9:16", reframe="speaker", captions="karaoke"),
    "9:16 center + burned": ExportOptions(aspect="9:16", reframe="center", captions="burned"),
    "16:9 plain": ExportOptions(aspect="16:9", reframe="none", captions="none"),
}
SIZES = {720: (1280, 720), 1080: (1920, 1080)}
TEXT = "so that is how the whole thing works and why we built it this way".split()


def words_for(seconds: float) -> list[Word]:
    return [Word(round(i * 0.4, 2), round(i * 0.4 + 0.35, 2), TEXT[i % len(TEXT)]) for i in range(int(seconds / 0.4))]


def remux(source: Path, dest: Path) -> None:
    with av.open(str(source)) as src, av.open(str(dest), "w", format="mp4") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        for packet in src.demux():
            if packet.dts is None or packet.stream.index not in streams:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


def reencode(source: Path, dest: Path) -> None:
    """Video decoded and encoded again at its size (libx264, the export's settings); audio copied."""
    with av.open(str(source)) as src, av.open(str(dest), "w", format="mp4") as out:
        vin = src.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.options = {**X264, "threads": "1"}
        ain = src.streams.audio[0]
        aout = out.add_stream_from_template(ain)
        for packet in src.demux(vin, ain):
            if packet.dts is None:
                continue
            if packet.stream is ain:
                packet.stream = aout
                out.mux(packet)
                continue
            for frame in packet.decode():
                frame.pict_type = av.video.frame.PictureType.NONE
                out.mux(vout.encode(frame))
        out.mux(vout.encode(None))


def cpu_of(fn, *args) -> float:
    started = time.process_time()
    fn(*args)
    return time.process_time() - started


def measure(seconds: float) -> dict:
    results: dict = {"seconds": seconds, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="livecut-export-cost-") as tmp:
        words = words_for(seconds)
        for height, (w, h) in SIZES.items():
            clip = Path(tmp, f"clip{height}.mp4")
            make_talking_head(clip, width=w, height=h, seconds=seconds, fps=30, face_height=0.8)
            row = {
                "remux": cpu_of(remux, clip, Path(tmp, "remux.mp4")) / seconds,
                "reencode": cpu_of(reencode, clip, Path(tmp, "reencode.mp4")) / seconds,
                "exports": {},
            }
            for name, options in CASES.items():
                sized = msgspec.structs.replace(options, max_height=height)
                result = render(str(clip), str(Path(tmp, "export.mp4")), sized, words, threads=1)
                per_second = result.cpu / seconds
                row["exports"][name] = {
                    "cpu_per_second": round(per_second, 3),
                    "size": f"{result.width}x{result.height}",
                    "vs_reencode": round(per_second / row["reencode"], 2),
                    "vs_remux": round(per_second / row["remux"], 1),
                }
            row["remux"], row["reencode"] = round(row["remux"], 4), round(row["reencode"], 3)
            results["sizes"][f"{height}p"] = row
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = measure(args.seconds)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"CPU seconds per clip second, one thread, {args.seconds:g} s talking-head clip")
    for size, row in results["sizes"].items():
        print(f"\n{size}: remux {row['remux']:.4f}, re-encode {row['reencode']:.3f}")
        for name, e in row["exports"].items():
            print(f"  {name:<24} {e['size']:>9}  {e['cpu_per_second']:.3f}  "
                  f"x{e['vs_reencode']:.2f} re-encode  x{e['vs_remux']:.0f} remux")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
