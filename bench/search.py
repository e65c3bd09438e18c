"""Transcript search speed: ``Store.search_clips`` (``GET /api/clips?q=``) against the plain
newest-first listing (``Store.list_clips``), on one fresh Postgres database filled with
clips whose transcripts are drawn from a word list.

    python -m bench.search [--clips 50000] [--queries 200] [--json]

The baseline is the listing's first page, measured in the same run; the figures are the
search's p50/p95 latency as ratios to it, for a common word (in ~5% of clips), a rare one
(~0.1%), a two-word phrase, and a common word within one channel, and the matches found.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time

import asyncpg

from bench.stats import percentile
from records.store import Store
from records.wire import ChannelCreate

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
FILLER = ("the a and so we they it that this what go got get is was here there now then really just "
          "like okay right yeah well look see know think going play round team shot game win lose").split()  # fmt: skip


def transcript(rng: random.Random) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(8, 40))]
    if rng.random() < 0.05:
        words.insert(rng.randrange(len(words)), "dragon")
    if rng.random() < 0.001:
        words.insert(rng.randrange(len(words)), "unicorn")
    if rng.random() < 0.02:
        words[rng.randrange(len(words)):0] = ["clutch", "play"]
    return " ".join(words)


async def fill(store: Store, clips: int, channels: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ids = [(await store.create_channel(ChannelCreate(name=f"c{i}", source="rtmp"), {}))["id"] for i in range(channels)]
    rows = [
        (f"{i:014x}{secrets.token_hex(4)}", ids[i % channels], float(i), float(i + 20), 0.9, {}, transcript(rng),
         "/nonexistent.mp4", "/nonexistent.jpg", 20.0, [])
        for i in range(clips)
    ]  # fmt: skip
    await store.pool.executemany(
        """INSERT INTO clips (id, channel_id, stream_start, stream_end, score, signals, transcript,
                              video_path, thumbnail_path, duration, triggers)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        rows,
    )
    await store.pool.execute("ANALYZE clips")
    return ids


async def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - started)
    return out


async def run(args) -> dict:
    name = f"livecut_bench_search_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        store = await Store.connect(ADMIN_DSN.rsplit("/", 1)[0] + "/" + name)
        try:
            await store.migrate()
            started = time.perf_counter()
            channels = await fill(store, args.clips, args.channels, args.seed)
            filled = time.perf_counter() - started
            base = await timed(lambda: store.list_clips(limit=50), args.queries)
            cases = {
                "common word": dict(query="dragon"),
                "rare word": dict(query="unicorn"),
                "phrase": dict(query='"clutch play"'),
                "common word, one channel": dict(query="dragon", channel_id=channels[0]),
            }
            report: dict = {"clips": args.clips, "fill_seconds": round(filled, 1),
                            "baseline_list_p50_ms": round(percentile(base, 0.5) * 1000, 2)}  # fmt: skip
            for label, kw in cases.items():
                found = len(await store.search_clips(limit=200, **kw))
                lat = await timed(lambda kw=kw: store.search_clips(limit=50, **kw), args.queries)
                report[label] = {
                    "p50_ms": round(percentile(lat, 0.5) * 1000, 2), "p95_ms": round(percentile(lat, 0.95) * 1000, 2),
                    "p50_ratio_to_list": round(percentile(lat, 0.5) / percentile(base, 0.5), 2),
                    "first_200_found": found,
                }  # fmt: skip
            return report
        finally:
            await store.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=50_000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['clips']} clips (filled in {report['fill_seconds']} s); "
          f"baseline: newest-first page of 50, p50 {report['baseline_list_p50_ms']} ms")  # fmt: skip
    for label, r in report.items():
        if isinstance(r, dict):
            print(f"  {label:26s} p50 {r['p50_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms  "
                  f"x{r['p50_ratio_to_list']:.2f} the listing  ({r['first_200_found']} found, first 200)")  # fmt: skip


if __name__ == "__main__":
    main()
