"""End to end for the feed page's VOD view, in a real browser (Debian's headless Chromium driven
by Playwright) against a real `livecut up`.

1. A URL (a broadcast served over loopback HTTP) and a file (uploaded over tus) go in as one
   batch; both jobs show, advance, finish, and show clip cards whose videos load. A reload
   lists them again.
2. Cancel stops a running job; a job that fails shows its error.
3. An upload interrupted by a page reload resumes, once the same file is chosen again, from
   the server's offset rather than from 0, and the server ends up with the file intact.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import secrets
import subprocess
import threading

import httpx
import pytest

from bench.broadcast import Moment, make_broadcast
from conftest import stack_on_fresh_database

pytestmark = pytest.mark.e2e

WAIT_MS = 240_000  # a VOD job on 2 busy cores: seconds normally; generous on purpose

# Records, in the page, every state the VOD view passes through: each upload's percentage and
# each job's (status, progress), as the DOM changes, so short-lived states are not missed by
# polling. Installed by add_init_script, so it survives reloads.
RECORDER = """
(() => {
  const seen = { uploads: [], jobs: {} };
  window.__vodSeen = seen;
  function scan() {
    for (const row of document.querySelectorAll("#vod-uploads .upload")) {
      const pct = row.querySelector(".up-pct").textContent;
      const last = seen.uploads[seen.uploads.length - 1];
      if (!last || last.pct !== pct || last.state !== row.dataset.state) {
        seen.uploads.push({ name: row.querySelector(".up-name").textContent, pct, state: row.dataset.state });
      }
    }
    for (const job of document.querySelectorAll("#vod-jobs .job")) {
      const list = (seen.jobs[job.dataset.id] = seen.jobs[job.dataset.id] || []);
      const now = [job.dataset.status, Number(job.querySelector(".job-bar").value)];
      const last = list[list.length - 1];
      if (!last || last[0] !== now[0] || last[1] !== now[1]) list.push(now);
    }
  }
  document.addEventListener("DOMContentLoaded", () => {
    new MutationObserver(scan).observe(document.body, {
      subtree: true, childList: true, attributes: true, characterData: true,
    });
  });
})();
"""


@pytest.fixture(scope="module")
def vod_stack(tmp_path_factory, pg_admin_dsn, redis_url):
    """A `livecut up` of its own, on a fresh database (no other test's jobs), with short shards."""
    with stack_on_fresh_database(
        tmp_path_factory.mktemp("vodview") / "data", pg_admin_dsn, redis_url,
        api_key=f"key-{secrets.token_hex(8)}", extra_args=["--allow-private-urls", "--vod-shard-seconds", "25"],
    ) as stack:
        yield stack


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1200, "height": 900})  # fresh localStorage
    context.add_init_script(RECORDER)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    try:
        page.screenshot(path=str(tmp_path / "vod_view.png"), full_page=True)  # for a failure's autopsy
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def served(tmp_path_factory, ffmpeg, espeak):
    """A broadcast served over loopback HTTP (what the pasted URLs point at): the base URL of
    served.mp4 and of a copy, cancelled.mp4."""
    root = tmp_path_factory.mktemp("served")
    make_broadcast(root / "served.mp4", duration=40.0, moments=[Moment(t=12.0, kind="loud"), Moment(t=30.0, kind="loud")])
    os.link(root / "served.mp4", root / "cancelled.mp4")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _uploads_requests(page) -> list[dict]:
    """Every request the page makes to /api/uploads, in order, with what matters of it."""
    seen: list[dict] = []

    def on_request(request):
        if "/api/uploads" in request.url:
            headers = request.headers
            seen.append({
                "method": request.method,
                "url": request.url,
                "offset": headers.get("upload-offset"),
                "auth": headers.get("authorization"),
            })

    page.on("request", on_request)
    return seen


def _video_loads(page, video) -> dict:
    """Whether a clip card's <video> loads: its metadata, and a fetch of its src."""
    video.scroll_into_view_if_needed()
    page.wait_for_function("(v) => v.readyState >= 1 || v.error", arg=video, timeout=60_000)
    return page.evaluate(
        """async (v) => {
            const res = await fetch(v.currentSrc || v.src);
            return { readyState: v.readyState, error: v.error && v.error.code, duration: v.duration,
                     status: res.status, type: res.headers.get("content-type") };
        }""",
        video,
    )


def test_batch_of_a_url_and_an_upload_runs_to_clips(vod_stack, served, page, tmp_path, ffmpeg, espeak):
    stack = vod_stack
    url = served + "served.mp4"
    local = tmp_path / "upload.mp4"
    make_broadcast(local, duration=30.0, moments=[Moment(t=12.0, kind="loud")])
    requests = _uploads_requests(page)
    every_url: list[str] = []
    page.on("request", lambda r: every_url.append(r.url))

    page.goto(f"{stack.base_url}/#vods&key={stack.api_key}")
    page.wait_for_selector("#vods-view:not([hidden])")
    assert stack.api_key not in page.url, "the key stays in the address bar"
    page.fill("#vod-urls", f"\n  {url}  \n")  # blank lines and spaces around are ignored
    page.set_input_files("#vod-files", str(local))
    page.click("#vod-submit")

    # both jobs appear, named after the URL's file and the uploaded file
    page.wait_for_function("() => document.querySelectorAll('#vod-jobs .job').length === 2", timeout=60_000)
    seen = page.evaluate("window.__vodSeen")
    pcts = [u["pct"] for u in seen["uploads"] if u["name"] == "upload.mp4"]
    assert pcts and pcts[-1] == "100%" and seen["uploads"][-1]["state"] == "done", seen["uploads"]
    assert [int(p.rstrip("%")) for p in pcts] == sorted(int(p.rstrip("%")) for p in pcts), pcts
    assert page.locator("#vod-uploads .upload").count() == 0, "submitted uploads leave the form"
    assert page.input_value("#vod-urls") == ""

    # the upload went over tus with the key in a header only
    assert requests and {r["method"] for r in requests} >= {"POST", "PATCH"}, requests
    assert all(r["auth"] == f"Bearer {stack.api_key}" for r in requests if r["method"] != "OPTIONS"), requests
    assert not any(stack.api_key in r["url"] for r in requests), requests

    jobs = {j["name"]: j for j in stack.api("GET", "/api/vods").json()["items"]}
    assert set(jobs) == {"served.mp4", "upload.mp4"}, jobs
    assert jobs["served.mp4"]["source"] == url
    assert jobs["upload.mp4"]["source"].startswith("upload:")
    shown = page.eval_on_selector_all(
        "#vod-jobs .job", "(els) => els.map(e => [e.dataset.id, e.querySelector('.job-name').textContent])"
    )
    assert sorted(map(tuple, shown)) == sorted((j["id"], name) for name, j in jobs.items())

    # both run to done, followed live
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('#vod-jobs .job')].every(j => j.dataset.status === 'done')",
            timeout=WAIT_MS,
        )
    except Exception:
        pytest.fail(f"jobs never showed done: {stack.api('GET', '/api/vods').json()}\n{stack.log_tail()}")
    page.screenshot(path=str(tmp_path / "vod_view_done.png"), full_page=True)
    history = page.evaluate("window.__vodSeen")["jobs"]
    for name, job in jobs.items():
        states = history[job["id"]]
        progress = [p for _, p in states]
        # seen unfinished first, then advancing (never back) to done at 100%
        assert states[0][0] in ("queued", "running") and progress[0] < 1, (name, states)
        assert progress == sorted(progress) and states[-1] == ["done", 1], (name, states)
        assert any(s == "running" and 0 < p < 1 for s, p in states), (name, states)  # a shard's worth

    for name, job in jobs.items():
        card = page.locator(f'#vod-jobs .job[data-id="{job["id"]}"]')
        assert card.locator(".job-pct").inner_text() == "100%"
        assert card.locator(".cancel").is_hidden(), "a finished job cannot be cancelled"
        assert card.locator(".job-error").is_hidden()
        # its clips, as cards like the live feed's, each with a video that loads
        page.wait_for_function(
            "(id) => document.querySelectorAll(`#vod-jobs .job[data-id='${id}'] .clip video`).length >= 1",
            arg=job["id"], timeout=60_000,
        )
        final = stack.api("GET", f"/api/vods/{job['id']}").json()
        clips = stack.api("GET", f"/api/clips?vod_id={job['id']}").json()["items"]
        cards = card.locator(".clip")
        assert final["clips"] >= 1 and cards.count() == final["clips"] == len(clips), (name, final, cards.count())
        assert card.locator(".job-count").inner_text() == f"{final['clips']} clip{'s' if final['clips'] != 1 else ''}"
        ids = cards.evaluate_all("(els) => els.map(e => e.dataset.id)")
        assert sorted(ids) == sorted(c["id"] for c in clips)
        for i in range(cards.count()):
            clip = cards.nth(i)
            assert clip.locator(".channel-name").inner_text() == name
            assert clip.locator(".score").inner_text().startswith("score ")
            video = clip.locator("video").element_handle()
            loaded = _video_loads(page, video)
            assert loaded["readyState"] >= 1 and not loaded["error"] and loaded["duration"] > 0, loaded
            assert loaded["status"] == 200 and loaded["type"] == "video/mp4", loaded
            assert "/thumbnail" in clip.locator("video").get_attribute("poster")
            assert "sig=" in clip.locator("video").get_attribute("src"), "media opens by signed URL"

    # a clip's transcript shows as captions: its WebVTT track loads, with cues inside the clip
    spoken = [c for j in jobs.values() for c in stack.api("GET", f"/api/clips?vod_id={j['id']}").json()["items"]
              if c["captions_url"]]  # fmt: skip
    assert spoken, "no VOD clip has a timed transcript"
    track = page.wait_for_function(
        """(id) => {
             const v = document.querySelector(`#vod-jobs .clip[data-id='${id}'] video`);
             const t = v && v.querySelector("track");
             if (!t || t.readyState !== 2 || !t.track.cues || !t.track.cues.length) return null;
             return {src: t.src, cues: [...t.track.cues].map(c => [c.startTime, c.endTime, c.text]), duration: v.duration};
           }""",
        arg=spoken[0]["id"], timeout=30_000,
    ).json_value()  # fmt: skip
    assert "sig=" in track["src"] and track["cues"], track
    assert all(0 <= a < b <= track["duration"] + 0.5 for a, b, _ in track["cues"]), track
    assert " ".join(t for _, _, t in track["cues"]).replace("\n", " ") == spoken[0]["transcript"], track

    # jobs submitted earlier are listed on load, with their clips
    page.reload()
    page.wait_for_function(
        "(n) => document.querySelectorAll('#vod-jobs .job[data-status=done] .clip').length === n",
        arg=sum(stack.api("GET", f"/api/vods/{j['id']}").json()["clips"] for j in jobs.values()),
        timeout=30_000,
    )
    assert page.locator("#vod-jobs .job").count() == 2
    assert page.locator("#vod-empty").is_hidden()

    # the Live tab is the live feed, where VOD clips do not show
    page.click("#tab-live")
    page.wait_for_selector("#live-view", state="visible")
    assert page.locator("#vods-view").is_hidden() and page.locator("#picker").is_visible()
    assert page.locator("#clips .clip").count() == 0
    # the search box finds a clip by a word said in it (VOD clips included), and clearing it
    # brings the live list back
    word = max((w.strip(".,!?") for w in spoken[0]["transcript"].split() if w.strip(".,!?").isalpha()), key=len)
    page.fill("[data-testid=search-input]", word)
    page.press("[data-testid=search-input]", "Enter")
    page.wait_for_selector(f"#search-results .clip[data-id='{spoken[0]['id']}']", timeout=15_000)
    assert page.locator("#clips").is_hidden() and page.locator("#search-status").inner_text().startswith(
        tuple("123456789"))  # fmt: skip
    page.fill("[data-testid=search-input]", "")
    page.press("[data-testid=search-input]", "Enter")
    page.wait_for_selector("#search-results", state="hidden")
    page.click("#tab-vods")
    page.wait_for_selector("#vods-view", state="visible")
    assert page.locator("#live-view").is_hidden() and page.locator("#picker").is_hidden()
    # the key never travelled in a URL: not to the page (a fragment stays in the browser), not
    # in media, API or Socket.IO requests
    assert every_url and not any(stack.api_key in u for u in every_url), [u for u in every_url if stack.api_key in u]


def test_cancel_stops_a_running_job_and_a_failed_job_shows_why(vod_stack, served, page):
    stack = vod_stack
    page.goto(f"{stack.base_url}/#vods&key={stack.api_key}")
    page.wait_for_selector("#vods-view:not([hidden])")
    page.fill("#vod-urls", f"{served}cancelled.mp4\n{served}served.truth.json")  # the second is no media
    page.click("#vod-submit")
    card = page.locator("#vod-jobs .job", has_text="cancelled.mp4")
    card.wait_for(timeout=30_000)
    job_id = card.get_attribute("data-id")
    assert card.get_attribute("data-status") in ("queued", "running")
    card.locator(".cancel").click()

    page.wait_for_function(
        "(id) => document.querySelector(`#vod-jobs .job[data-id='${id}']`).dataset.status === 'cancelled'",
        arg=job_id, timeout=30_000,
    )
    job = stack.api("GET", f"/api/vods/{job_id}").json()
    assert job["status"] == "cancelled", job
    assert card.locator(".badge").inner_text().lower() == "cancelled"
    assert card.locator(".cancel").is_hidden()
    assert float(card.locator(".job-bar").get_attribute("value")) < 1

    failed = page.locator("#vod-jobs .job", has_text="served.truth.json")
    failed.wait_for(timeout=30_000)
    page.wait_for_function(
        "(id) => document.querySelector(`#vod-jobs .job[data-id='${id}']`).dataset.status === 'failed'",
        arg=failed.get_attribute("data-id"), timeout=60_000,
    )
    job = stack.api("GET", f"/api/vods/{failed.get_attribute('data-id')}").json()
    assert job["status"] == "failed" and job["error"]["code"], job
    assert failed.locator(".job-error").is_visible()
    assert failed.locator(".job-error").inner_text() == f"{job['error']['code']}: {job['error']['message']}"
    assert failed.locator(".cancel").is_hidden()


def test_upload_resumes_after_a_reload(vod_stack, page, tmp_path, ffmpeg):
    stack = vod_stack
    # ~26 MB of valid media (white noise as 16-bit PCM WAV), sent 256 KiB per PATCH
    big = tmp_path / "long.wav"
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=d=140:c=white:r=48000:a=0.3",
         "-ac", "2", "-c:a", "pcm_s16le", str(big)],
        check=True, timeout=60,
    )
    size = big.stat().st_size
    requests = _uploads_requests(page)

    page.goto(f"{stack.base_url}/?tus_chunk=262144#vods&key={stack.api_key}")
    page.wait_for_selector("#vods-view:not([hidden])")
    page.set_input_files("#vod-files", str(big))
    page.wait_for_function("() => { const b = document.querySelector('.upload .up-bar'); return b && b.value >= 0.1; }")
    page.reload()
    page.wait_for_selector("#vods-view:not([hidden])")
    before = len(requests)  # the old page's requests all came before its unload

    # the page remembers the unfinished upload, and says how to resume it
    page.wait_for_selector("#vod-interrupted:not([hidden])")
    assert "long.wav" in page.inner_text("#vod-interrupted")
    assert page.locator("#vod-uploads .upload").count() == 0

    page.set_input_files("#vod-files", str(big))
    try:
        page.wait_for_function("() => document.querySelector('.upload').dataset.state === 'done'", timeout=120_000)
    except Exception:
        pytest.fail(f"the upload never finished: {page.inner_text('#vod-uploads')}\n{stack.log_tail()}")

    first, after = requests[:before], requests[before:]
    created = [r for r in first if r["method"] == "POST"]
    assert len(created) == 1 and any(r["method"] == "PATCH" for r in first), first
    upload_url = next(r["url"] for r in first if r["method"] == "PATCH")
    upload_id = upload_url.rstrip("/").rsplit("/", 1)[1]
    # after the reload: no new upload; a HEAD for the offset, then PATCHes from there
    assert not any(r["method"] == "POST" for r in after), after
    patches = [r for r in after if r["method"] == "PATCH"]
    assert after[0]["method"] == "HEAD" and after[0]["url"] == upload_url, after[:3]
    assert patches and all(r["url"] == upload_url for r in patches), after
    resumed_at = int(patches[0]["offset"])
    assert 0 < resumed_at < size, patches[0]
    assert all(r["auth"] == f"Bearer {stack.api_key}" for r in requests), requests
    assert not any(stack.api_key in r["url"] for r in requests)

    row = page.locator("#vod-uploads .upload")
    assert row.locator(".up-pct").inner_text() == "100%"
    assert re.fullmatch(r"uploaded \(resumed at [1-9]\d?%\)", row.locator(".up-note").inner_text())
    # done: nothing left to resume
    page.wait_for_selector("#vod-interrupted", state="hidden")
    stored = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))")
    assert stored == [], stored

    # the server has all of it, byte for byte
    head = httpx.head(upload_url, headers={"Authorization": f"Bearer {stack.api_key}", "Tus-Resumable": "1.0.0"})
    assert head.status_code == 200, head
    assert int(head.headers["upload-offset"]) == int(head.headers["upload-length"]) == size
    data = stack.data_dir / "uploads" / upload_id
    assert hashlib.sha256(data.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()

    # Remove terminates it on the server (a finished upload is otherwise kept until used)
    row.locator(".up-action").click()
    page.wait_for_function("() => !document.querySelector('#vod-uploads .upload')")
    gone = None
    for _ in range(50):
        gone = httpx.head(upload_url, headers={"Authorization": f"Bearer {stack.api_key}", "Tus-Resumable": "1.0.0"})
        if gone.status_code == 404:
            break
        page.wait_for_timeout(100)
    assert gone.status_code == 404, gone
