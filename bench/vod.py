"""VOD throughput: media seconds per wall second, against the naive baseline, on this machine.

1. Generates a broadcast (``bench.broadcast``: speech throughout, a roar or a shouted keyword
   every 20 s) as long as the longest recording asked for, and cuts the shorter ones from it
   by stream copy.
2. Runs a real ``livecut up`` (Ray on every core of this machine) and submits each recording
   as a VOD job (one at a time, so each has the whole machine); wall time is the job's own,
   from ``started_at`` to ``finished_at``; the CPU split (decode, ASR, other detectors,
   cutting) is what the job reports when done.
3. Baseline, in the same run: the live pipeline over the same recording in one process, the
   file read as fast as possible (``bench.live_replay``: streaming ASR, every packet in order).

    .venv/bin/python -m bench.vod [--minutes 10,30,60] [--baseline-minutes 60] [--json] [--out DIR]

Uses DATABASE_URL / REDIS_URL when set, else the embedded servers.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.broadcast import make_broadcast
from bench.stack import LivecutProcess


def _recording(out: Path, minutes: int, longest: int) -> Path:
    full = out / f"broadcast-{longest}min.mp4"
    if not full.exists():
        print(f"generating a {longest} min broadcast ...", file=sys.stderr, flush=True)
        make_broadcast(full, duration=longest * 60.0)
    if minutes == longest:
        return full
    path = out / f"broadcast-{minutes}min.mp4"
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(full), "-c", "copy",
             "-t", str(minutes * 60), "-movflags", "+faststart", str(path)],
            check=True,
        )
    return path


def _seconds(a: str, b: str) -> float:
    parse = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(b) - parse(a)).total_seconds()


def run_vod(stack: LivecutProcess, path: Path) -> dict:
    response = stack.api("POST", "/api/vods", json={"url": f"file://{path}", "name": path.name})
    if response.status_code != 201:
        raise RuntimeError(f"submit refused: {response.status_code} {response.text}")
    job = response.json()
    while job["status"] not in ("done", "failed", "cancelled"):
        time.sleep(1.0)
        job = stack.api("GET", f"/api/vods/{job['id']}").json()
    if job["status"] != "done":
        raise RuntimeError(f"the job for {path.name} ended {job['status']}: {job['error']}")
    wall = _seconds(job["started_at"], job["finished_at"])
    return {
        "media_seconds": job["duration"], "wall_seconds": round(wall, 2),
        "speed": round(job["duration"] / wall, 2), "clips": job["clips"], "cpu": job["cpu"],
    }


def run_baseline(path: Path, seconds: float | None) -> dict:
    from bench.live_replay import replay
    from detectors.crowd import warm
    from detectors.speech import SpeechOptions, load_whisper_model

    model = load_whisper_model(SpeechOptions())
    warm()
    clip = path
    if seconds is not None:
        clip = path.with_name(f"{path.stem}-baseline.mp4")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(path), "-c", "copy",
                        "-t", str(seconds), str(clip)], check=True)
    started = time.monotonic()
    events, cpu = replay(clip, model)
    wall = time.monotonic() - started
    import av

    with av.open(str(clip)) as container:
        media = container.duration / av.time_base
    return {"media_seconds": round(media, 2), "wall_seconds": round(wall, 2), "speed": round(media / wall, 2),
            "moments": len(events), "cpu": {k: round(v, 2) for k, v in cpu.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="10,30,60", help="recording lengths (default 10,30,60)")
    parser.add_argument("--baseline-minutes", type=float, default=None,
                        help="run the baseline on the first N minutes of the longest recording (default: all of it; 0: no baseline)")
    parser.add_argument("--shard-seconds", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/livecut-bench-vod"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    minutes = sorted(int(m) for m in args.minutes.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {m: _recording(args.out, m, minutes[-1]) for m in minutes}

    stack = LivecutProcess(
        args.out / f"data-{os.getpid()}", database_url=os.environ.get("DATABASE_URL", ""),
        redis_url=os.environ.get("REDIS_URL", ""),
        extra_args=["--allow-private-urls", "--vod-shard-seconds", str(args.shard_seconds)],
    )
    results: dict = {"cores": os.cpu_count(), "vod": {}}
    with stack:
        for m in minutes:
            print(f"VOD job, {m} min ...", file=sys.stderr, flush=True)
            results["vod"][str(m)] = run_vod(stack, paths[m])
    longest = paths[minutes[-1]]
    vod_long = results["vod"][str(minutes[-1])]
    if args.baseline_minutes != 0:
        baseline_seconds = args.baseline_minutes * 60 if args.baseline_minutes else None
        print("baseline (live pipeline, one process) ...", file=sys.stderr, flush=True)
        results["baseline"] = run_baseline(longest, baseline_seconds)
        results["ratio"] = round(vod_long["speed"] / results["baseline"]["speed"], 2)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"\nVOD jobs on {results['cores']} cores (shards of {args.shard_seconds:.0f} s, Ray tasks):")
    print(f"{'recording':>10} {'wall':>8} {'× real time':>12} {'wall per media min':>19} {'clips':>6}")
    for m in minutes:
        r = results["vod"][str(m)]
        print(f"{m:>7} min {r['wall_seconds']:>7.1f}s {r['speed']:>11.1f}× {r['wall_seconds'] / m:>17.2f} s {r['clips']:>6}")
    b = results.get("baseline")
    if b is not None:
        print(f"\nbaseline, live pipeline in one process over {b['media_seconds'] / 60:.0f} min: "
              f"{b['wall_seconds']:.1f}s, {b['speed']:.1f}× real time")
        print(f"VOD / baseline ({minutes[-1]} min): {results['ratio']:.1f}×")
    cpu = vod_long["cpu"]
    total = sum(cpu.values())
    print(f"\nCPU split of the {minutes[-1]} min job ({total:.0f} CPU-s, {total / vod_long['media_seconds']:.3f} per media s):")
    for stage, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:>10}: {seconds:8.1f} s  {seconds / total:6.1%}")
    if b is not None:
        print("baseline CPU split:", ", ".join(f"{k} {v:.0f} s" for k, v in b["cpu"].items()))


if __name__ == "__main__":
    main()
