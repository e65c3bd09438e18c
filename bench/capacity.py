"""Capacity benchmark: how many concurrent live streams this machine keeps in real time with
the full detector set, and what each stream costs in memory and CPU.

    .venv/bin/python -m bench.capacity [--counts 2,4,6,8,10] [--seconds 300] [--max-lag 10]
                                       [--asr both|node|actor] [--json]

``--asr`` picks the ASR design: ``node`` (one shared, batched whisper server per node, the
default of ``livecut up``), ``actor`` (each stream actor loads and runs its own model: the
design before it), or ``both``: the whole sweep once per design, in the same run, and the
node design's figures as ratios against the actor design's.

One ``livecut up`` runs the whole time, with ``--streams-per-node`` and ``--max-streams`` set
to the largest count. One synthetic broadcast is made with ``bench.broadcast`` (speech all
along, loud and keyword moments planted every 20 s, so ASR, loudness, keywords, scene and
fusion all work, and clips get cut). Then, for each count N in ascending order:

1. channels are added up to N (those of the previous count keep running, publishers and all);
   each new one gets its own publisher process (``python -m supervisor.demo``) that loops the
   broadcast over RTMP, paced to real time; starts are staggered by a second;
2. once every channel is live, and after ``--settle`` seconds, each channel's health is sampled
   every ``--interval`` seconds for ``--seconds``;
3. the count PASSES if, on every channel, ``ingest_lag`` and ``detector_lag`` stayed within
   ``--max-lag``, stream time kept pace with the wall clock (stream seconds gained / wall
   seconds >= ``--min-pace``; wall time is the health report's own ``health_at``), and the
   stream actor was never restarted.

It stops at the first failing count and says why. Columns: worst ingest and detector lag
over all channels, the worst pace, the stream actors' CPU seconds per stream-second (from
``cpu_seconds`` / ``stream_time`` deltas, so model load is not in it), the mean RSS of a stream
actor, the 1-minute load average (mean over the window) and how busy the whole machine was.
Load and busy are machine-wide: they include the publishers (their own CPU is shown as
``pub``), livecut's other processes, and anything else running on the machine.

Delivery latency is measured on every clip notified during the window: from when the clip's
last second was buffered (the wall time of the first health report whose stream time passed
the clip's end, less the difference; ingest lag is ~0 on loopback, so this is when it was
pushed) to the Socket.IO ``clip`` event, p95 over all channels (``delivery p95``).

The ASR server's own process is measured too (its CPU per stream-second is the ``asr``
column, and its RSS is shared out over the streams in ``RSS/stream``), so the two designs
are compared on everything they run.

Uses DATABASE_URL / REDIS_URL when set, else the embedded servers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil

from bench.broadcast import make_broadcast
from bench.stack import ClipSubscriber, LivecutProcess, asr_server_processes
from bench.stats import percentile

ACTOR_CPUS = 0.25  # SupervisorConfig.actor_cpus: the Ray CPU request of one stream actor
GROWING = 2.0  # lag gained (s) from the first third of the window to the last that counts as a backlog


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Sample:
    wall: float  # when we polled
    status: str
    reason: str
    at: float | None  # health_at: when the actor reported (the DB's clock)
    health: dict


@dataclass
class ChannelStats:
    channel_id: str
    samples: list[Sample] = field(default_factory=list)

    def live(self) -> list[Sample]:
        return [s for s in self.samples if s.status == "live" and s.health and s.at is not None]

    @property
    def pids(self) -> list[int]:
        seen: list[int] = []
        for s in self.samples:
            pid = (s.health or {}).get("pid")
            if pid and pid not in seen:
                seen.append(pid)
        return seen

    def lag(self, key: str) -> float:
        return max((s.health.get(key, 0.0) for s in self.samples if s.health), default=0.0)

    def _span(self) -> tuple[Sample, Sample] | None:
        """First and last live sample of the last actor process seen (a restart resets stream time)."""
        pid = self.pids[-1] if self.pids else None
        live = [s for s in self.live() if s.health.get("pid") == pid]
        if len(live) < 2 or live[-1].at - live[0].at <= 0:
            return None
        return live[0], live[-1]

    def pace(self) -> float | None:
        span = self._span()
        if span is None:
            return None
        a, b = span
        return (b.health["stream_time"] - a.health["stream_time"]) / (b.at - a.at)

    def cpu_and_stream(self) -> tuple[float, float]:
        span = self._span()
        if span is None:
            return 0.0, 0.0
        a, b = span
        return b.health["cpu_seconds"] - a.health["cpu_seconds"], b.health["stream_time"] - a.health["stream_time"]

    def trend(self, key: str) -> tuple[float, float]:
        """(seconds of lag gained, per minute) from the first live third of the window to the last."""
        live = self.live()
        if len(live) < 6:
            return 0.0, 0.0
        k = len(live) // 3
        head, tail = live[:k], live[-k:]
        dt = (sum(s.at for s in tail) - sum(s.at for s in head)) / k
        dl = (sum(s.health.get(key, 0.0) for s in tail) - sum(s.health.get(key, 0.0) for s in head)) / k
        return dl, (60.0 * dl / dt if dt > 0 else 0.0)

    def live_fraction(self) -> float:
        return len(self.live()) / len(self.samples) if self.samples else 0.0


@dataclass
class StepResult:
    count: int
    passed: bool
    reason: str
    worst_ingest: float = 0.0
    worst_detector: float = 0.0
    worst_pace: float | None = None
    cpu_per_s: float | None = None
    rss_mib: float | None = None
    load: float | None = None
    busy: float | None = None
    pub_cpu_per_s: float | None = None
    asr_cpu_per_s: float | None = None  # the node's ASR server: CPU-s per stream-second
    delivery_p95: float | None = None  # s, clip end buffered -> Socket.IO notification, all channels
    clips: int = 0  # clips notified during the window
    rss_per_stream_mib: float | None = None  # actors' RSS, plus the ASR server's shared out


def asr_cpu_and_rss() -> tuple[float, float]:
    cpu = rss = 0.0
    for p in asr_server_processes():
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss


class Publishers:
    """One ``python -m supervisor.demo FILE URL`` process per channel, looping the broadcast in real time."""

    def __init__(self, media: Path, log_dir: Path):
        self.media = media
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def add(self, url: str) -> subprocess.Popen:
        log = open(self.log_dir / f"publisher-{len(self.procs)}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.demo", str(self.media), url],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()  # the child holds its own descriptor
        self.procs.append(proc)
        return proc

    def dead(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p.poll() is not None]

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                t = psutil.Process(p.pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()  # publish_forever stops after the packet it is on
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def machine_busy() -> tuple[float, float]:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0), sum(t)


def poll(stack: LivecutProcess, channel_id: str) -> Sample:
    wall = time.time()
    try:
        c = stack.api("GET", f"/api/channels/{channel_id}").json()
    except Exception as exc:  # the gateway itself may be starved at high counts
        return Sample(wall, "unreachable", repr(exc), None, {})
    return Sample(wall, c.get("status", "?"), c.get("status_reason", ""), _epoch(c.get("health_at")), c.get("health") or {})


def wait_live(stack: LivecutProcess, channels: list[dict], timeout: float) -> dict[str, Sample]:
    """Wait until every channel is live with its stream time moving; return those that are not."""
    deadline = time.monotonic() + timeout
    first: dict[str, float] = {}
    pending = {c["id"] for c in channels}
    last: dict[str, Sample] = {}
    while pending and time.monotonic() < deadline:
        for cid in sorted(pending):
            s = last[cid] = poll(stack, cid)
            if s.status == "live" and s.health.get("stream_time", 0.0) > 0:
                t = s.health["stream_time"]
                if cid in first and t > first[cid]:
                    pending.discard(cid)
                first.setdefault(cid, t)
        if pending:
            time.sleep(1.0)
    return {cid: last[cid] for cid in pending}


def why(failures: dict[str, list[str]], n: int) -> str:
    parts = []
    for what, who in failures.items():
        parts.append(f"{what} on {len(who)}/{n} channel{'s' if n > 1 else ''}")
    return "; ".join(parts)


def buffered_at(samples: list[Sample], t: float) -> float | None:
    """Wall time at which stream time ``t`` was buffered, from the first health report past it."""
    for s in samples:
        st = s.health.get("stream_time") if s.health else None
        if s.at is not None and st is not None and st >= t:
            return s.at - (st - t)
    return None


def delivery_latencies(stats: dict[str, ChannelStats], subscribers: dict[str, ClipSubscriber]) -> list[float]:
    out = []
    for cid, sub in subscribers.items():
        for clip, arrived in zip(list(sub.clips), list(sub.arrivals)):
            at = buffered_at(stats[cid].samples, clip["stream_end"])
            if at is not None:
                out.append(arrived - at)
    return out


def measure(stack: LivecutProcess, channels: list[dict], publishers: Publishers, args) -> StepResult:
    n = len(channels)
    stats = {c["id"]: ChannelStats(c["id"]) for c in channels}
    subscribers = {c["id"]: ClipSubscriber(stack.base_url, stack.api_key, c["id"]) for c in channels}
    loads: list[float] = []
    busy0, total0 = machine_busy()
    pub0 = publishers.cpu_seconds()
    asr0, _ = asr_cpu_and_rss()
    start = time.monotonic()
    end = start + args.seconds
    next_at = start
    try:
        while True:
            for cid, st in stats.items():
                st.samples.append(poll(stack, cid))
            loads.append(os.getloadavg()[0])
            if time.monotonic() >= end:
                break
            next_at += args.interval
            time.sleep(max(0.0, min(next_at, end) - time.monotonic()))
    finally:
        for sub in subscribers.values():
            sub.close()
    for st in stats.values():  # a report past the last clips' ends, for their buffered times
        st.samples.append(poll(stack, st.channel_id))
    busy1, total1 = machine_busy()
    pub_cpu = publishers.cpu_seconds() - pub0
    asr1, asr_rss = asr_cpu_and_rss()
    wall = time.monotonic() - start

    res = StepResult(count=n, passed=True, reason="")
    res.worst_ingest = max(st.lag("ingest_lag") for st in stats.values())
    res.worst_detector = max(st.lag("detector_lag") for st in stats.values())
    paces = [p for st in stats.values() if (p := st.pace()) is not None]
    res.worst_pace = min(paces) if paces else None
    cpu = stream = 0.0
    for st in stats.values():
        c, s = st.cpu_and_stream()
        cpu, stream = cpu + c, stream + s
    res.cpu_per_s = cpu / stream if stream > 0 else None
    res.asr_cpu_per_s = (asr1 - asr0) / stream if stream > 0 else None
    rss = [s.health["rss_bytes"] for st in stats.values() for s in st.samples if s.health.get("rss_bytes")]
    res.rss_mib = sum(rss) / len(rss) / 2**20 if rss else None
    res.rss_per_stream_mib = None if res.rss_mib is None else res.rss_mib + asr_rss / n / 2**20
    latencies = delivery_latencies(stats, subscribers)
    res.clips = len(latencies)
    res.delivery_p95 = percentile(latencies, 0.95) if latencies else None
    res.load = sum(loads) / len(loads)
    res.busy = 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else None
    res.pub_cpu_per_s = pub_cpu / (n * wall) if wall > 0 else None

    failures: dict[str, list[str]] = {}

    def fail(what: str, cid: str) -> None:
        failures.setdefault(what, []).append(cid)

    if dead := publishers.dead():
        failures[f"publisher process(es) {dead} exited (see their logs): a bench problem, not livecut"] = dead
    for cid, st in stats.items():
        if len(st.pids) > 1:
            reasons = {s.reason for s in st.samples if s.reason.startswith("restarted")}
            fail(f"stream actor restarted ({', '.join(sorted(reasons)) or 'pid changed'})", cid)
        if st.lag("ingest_lag") > args.max_lag:
            fail("ingest lag over the limit", cid)
        if st.lag("detector_lag") > args.max_lag:
            fail("detector lag over the limit", cid)
        pace = st.pace()
        if pace is None:
            last = st.samples[-1]
            fail(f"no stream progress to measure (last status {last.status}: {last.reason or '-'})", cid)
        elif pace < args.min_pace:
            fail(f"stream time fell behind the wall clock (pace < {args.min_pace})", cid)
        if st.live_fraction() < 0.8:
            fail("live for under 80% of the samples", cid)
    if not failures:
        return res

    res.passed = False
    detail = []
    if "detector lag over the limit" in failures:
        worst = max(stats.values(), key=lambda st: st.lag("detector_lag"))
        gained, slope = worst.trend("detector_lag")
        shape = (f"growing, +{gained:.1f} s over the window ({slope:+.1f} s/min): the detectors (ASR, the "
                 f"costliest stage) run slower than real time and fall further behind the ring buffer"
                 if gained >= GROWING else
                 f"not growing ({gained:+.1f} s over the window): peaks, e.g. ASR commits (up to max_lag after the words) "
                 f"and stalls around clip cuts, not a backlog")
        detail.append(f"detector lag up to {worst.lag('detector_lag'):.1f} s > {args.max_lag:g} s ({shape})")
    if "ingest lag over the limit" in failures:
        worst = max(stats.values(), key=lambda st: st.lag("ingest_lag"))
        gained, slope = worst.trend("ingest_lag")
        shape = "growing" if gained >= GROWING else "not growing"
        detail.append(f"ingest lag up to {worst.lag('ingest_lag'):.1f} s > {args.max_lag:g} s ({shape}, "
                      f"{gained:+.1f} s over the window): the actor's ingest thread reads the RTMP stream "
                      f"slower than real time")
    if res.worst_pace is not None and res.worst_pace < args.min_pace:
        detail.append(f"stream time gained only {res.worst_pace:.3f} s per wall second")
    res.reason = why(failures, n) + (" -- " + "; ".join(detail) if detail else "")
    return res


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (f"{'count':>5} {'result':>6} {'ingest_lag':>10} {'detector_lag':>12} {'pace':>6} "
          f"{'CPU-s/s':>8} {'asr':>6} {'RSS MiB':>8} {'RSS/stream':>10} {'load1':>6} {'busy%':>6} {'pub':>6} "
          f"{'clips':>5} {'dlv p95':>7}")


def row(r: StepResult) -> str:
    return (f"{r.count:>5} {'PASS' if r.passed else 'FAIL':>6} {r.worst_ingest:>9.2f}s {r.worst_detector:>11.2f}s "
            f"{fmt(r.worst_pace, '.3f'):>6} {fmt(r.cpu_per_s, '.3f'):>8} {fmt(r.asr_cpu_per_s, '.3f'):>6} "
            f"{fmt(r.rss_mib, '.0f'):>8} {fmt(r.rss_per_stream_mib, '.0f'):>10} "
            f"{fmt(r.load, '.2f'):>6} {fmt(r.busy, '.0f'):>6} {fmt(r.pub_cpu_per_s, '.3f'):>6} "
            f"{r.clips:>5} {fmt(r.delivery_p95, '.2f'):>6}s")


@dataclass
class Sweep:
    design: str
    results: list[StepResult]
    failed: StepResult | None

    @property
    def held(self) -> int:
        return max((r.count for r in self.results if r.passed), default=0)

    def at(self, count: int) -> StepResult | None:
        return next((r for r in self.results if r.count == count), None)


def sweep(design: str, counts: list[int], media: Path, work: Path, args) -> Sweep:
    """One ``livecut up --asr DESIGN`` and the counts in ascending order, up to the first failure."""
    top = counts[-1]
    stack = LivecutProcess(
        work / f"data-{design}", database_url=os.environ.get("DATABASE_URL", ""), redis_url=os.environ.get("REDIS_URL", ""),
        extra_args=["--streams-per-node", str(top), "--max-streams", str(top), "--asr", design],
    )
    publishers = Publishers(media, work)
    channels: list[dict] = []
    results: list[StepResult] = []
    failed: StepResult | None = None
    try:
        t0 = time.monotonic()
        stack.start()
        print(f"\n--asr {design}: livecut up healthy in {time.monotonic() - t0:.0f} s", flush=True)
        print(HEADER, flush=True)
        for n in counts:
            t0 = time.monotonic()
            new = []
            while len(channels) < n:
                r = stack.api("POST", "/api/channels", json={"name": f"capacity-{len(channels)}", "source": "rtmp"})
                if r.status_code >= 300:
                    raise RuntimeError(f"could not register channel {len(channels) + 1}: {r.status_code} {r.text}")
                channels.append(r.json())
                new.append(channels[-1])
            for c in new:  # each actor has loaded its models and reported before its publisher starts
                try:
                    stack.wait_channel(c["id"], lambda ch: ch["health_at"] is not None, timeout=180)
                except TimeoutError:
                    pass  # judged below: it never goes live
            for c in new:
                publishers.add(f"{c['ingest']['rtmp_url']}/{c['ingest']['stream_key']}")
                time.sleep(1.0)  # stagger: real streams do not hit their moments in lockstep
            not_live = wait_live(stack, channels, timeout=60 + 5 * len(new))
            if not_live:
                reasons = sorted({f"{s.status}: {s.reason or '-'}" for s in not_live.values()})
                why_not = f"{len(not_live)}/{n} channels never went live ({'; '.join(reasons)})"
                if n * ACTOR_CPUS > (os.cpu_count() or 1):
                    why_not += (f" -- Ray cannot place more than {int((os.cpu_count() or 1) / ACTOR_CPUS)} stream "
                                f"actors ({ACTOR_CPUS} CPU each, {os.cpu_count()} CPUs)")
                failed = StepResult(count=n, passed=False, reason=why_not)
                print(f"{n:>5} {'FAIL':>6}  {why_not}", flush=True)
                break
            time.sleep(args.settle)
            result = measure(stack, channels, publishers, args)
            results.append(result)
            print(row(result) + f"   ({time.monotonic() - t0:.0f} s)", flush=True)
            if not result.passed:
                failed = result
                print(f"      why: {result.reason}", flush=True)
                break
    except BaseException:
        print(f"\nlivecut log tail:\n{stack.log_tail(40)}", file=sys.stderr)
        raise
    finally:
        publishers.stop()
        stack.stop()
    return Sweep(design, results, failed)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def comparison(node: Sweep, actor: Sweep) -> dict:
    """The node design against the actor design: streams held, and the costs at the largest
    count both held (or both measured)."""
    common = [r.count for r in node.results if actor.at(r.count) is not None]
    held_by_both = [c for c in common if node.at(c).passed and actor.at(c).passed]
    count = max(held_by_both or common, default=None)
    out: dict = {"streams_held": {"node": node.held, "actor": actor.held, "ratio": _ratio(node.held, actor.held)},
                 "at_count": count}  # fmt: skip
    if count is not None:
        a, b = node.at(count), actor.at(count)
        for key, pick in (("cpu_per_stream_second", lambda r: (r.cpu_per_s or 0.0) + (r.asr_cpu_per_s or 0.0)),
                          ("rss_per_stream_mib", lambda r: r.rss_per_stream_mib),
                          ("worst_detector_lag", lambda r: r.worst_detector),
                          ("delivery_p95", lambda r: r.delivery_p95)):  # fmt: skip
            out[key] = {"node": pick(a), "actor": pick(b), "ratio": _ratio(pick(a), pick(b))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="2,4,6,8,10", help="stream counts to try, ascending (default 2,4,6,8,10)")
    parser.add_argument("--seconds", type=float, default=300.0, help="measured seconds per count (default 300)")
    parser.add_argument("--max-lag", type=float, default=10.0, help="largest ingest or detector lag allowed (s)")
    parser.add_argument("--min-pace", type=float, default=0.95, help="least stream seconds per wall second")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between health samples")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after all channels are live, before measuring")
    parser.add_argument("--broadcast-seconds", type=float, default=120.0, help="length of the looped broadcast")
    parser.add_argument("--asr", choices=("both", "node", "actor"), default="both", help="ASR design(s) to sweep (default both)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (livecut.log, publisher logs, clips)")
    args = parser.parse_args()
    counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    if not counts or counts[0] < 1:
        parser.error("--counts needs positive integers")
    top = counts[-1]
    designs = ["actor", "node"] if args.asr == "both" else [args.asr]

    work = Path(tempfile.mkdtemp(prefix="livecut-capacity-"))
    print(f"livecut capacity bench: counts {counts}, {args.seconds:.0f} s each, max lag {args.max_lag:g} s, "
          f"pace >= {args.min_pace}, ASR {' and '.join(designs)}, {os.cpu_count()} cores, work dir {work}", flush=True)
    if top * ACTOR_CPUS > (os.cpu_count() or 1):
        print(f"note: each stream actor asks Ray for {ACTOR_CPUS} CPU and Ray has {os.cpu_count()}: "
              f"at most {int((os.cpu_count() or 1) / ACTOR_CPUS)} actors can be placed", flush=True)
    media = work / "broadcast.mp4"
    t0 = time.monotonic()
    truth = make_broadcast(media, duration=args.broadcast_seconds)
    print(f"broadcast: {args.broadcast_seconds:.0f} s, {len(truth.moments)} planted moments "
          f"({time.monotonic() - t0:.0f} s to make)", flush=True)
    try:
        sweeps = {d: sweep(d, counts, media, work, args) for d in designs}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("\ncolumns: worst ingest/detector lag over all channels; pace = worst stream s per wall s; CPU-s/s = "
          "stream actor CPU-s per stream-second; asr = the node's ASR server CPU-s per stream-second; RSS = mean "
          "stream actor RSS; RSS/stream = that plus the ASR server's RSS shared out; load1 = mean 1-min load average; "
          "busy = machine CPU use; pub = publisher CPU-s per stream-second (all machine-wide figures include "
          "whatever else runs here); clips = clips notified in the window; dlv p95 = their delivery latency, p95")
    for design, sw in sweeps.items():
        if sw.failed is None:
            print(f"--asr {design}: {sw.held} streams on this machine (no failure up to {top}; try larger --counts)")
        else:
            print(f"--asr {design}: {sw.held} streams on this machine (first failure at {sw.failed.count}: {sw.failed.reason})")
    report: dict = {"cores": os.cpu_count(), "seconds": args.seconds, "max_lag": args.max_lag,
                    "sweeps": {d: {"held": sw.held, "steps": [vars(r) for r in sw.results],
                                   "failed": None if sw.failed is None else vars(sw.failed)}
                               for d, sw in sweeps.items()}}  # fmt: skip
    if len(sweeps) == 2:
        cmp = report["node_vs_actor"] = comparison(sweeps["node"], sweeps["actor"])
        print(f"\nnode vs actor (ratio node/actor): streams held {cmp['streams_held']['node']} vs "
              f"{cmp['streams_held']['actor']}", end="")
        if cmp["at_count"] is not None:
            c = cmp
            print(f"; at {c['at_count']} streams: CPU-s per stream-second (ASR server included) "
                  f"{fmt(c['cpu_per_stream_second']['node'], '.3f')} vs {fmt(c['cpu_per_stream_second']['actor'], '.3f')} "
                  f"(x{fmt(c['cpu_per_stream_second']['ratio'], '.2f')}), RSS per stream "
                  f"{fmt(c['rss_per_stream_mib']['node'], '.0f')} vs {fmt(c['rss_per_stream_mib']['actor'], '.0f')} MiB "
                  f"(x{fmt(c['rss_per_stream_mib']['ratio'], '.2f')}), worst detector lag "
                  f"{c['worst_detector_lag']['node']:.1f} vs {c['worst_detector_lag']['actor']:.1f} s, delivery p95 "
                  f"{fmt(c['delivery_p95']['node'], '.2f')} vs {fmt(c['delivery_p95']['actor'], '.2f')} s")
        else:
            print()
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
