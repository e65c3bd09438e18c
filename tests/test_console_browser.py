"""The web console at `/`, end to end in a real browser (Debian's headless Chromium driven by
Playwright) against a real `livecut up` (issue 14).

1. An RTMP channel registered through the form: its stream key read from the page, the
   generated broadcast pushed to it with the FFmpeg CLI, its health charted, and the clip shown
   in the feed without a reload; its video plays and its captions load; search finds it by a
   spoken word; its page shows a bar per signal that fired and an export runs to a download
   link. Key rotation and deletion with a confirmation. A VOD URL submitted runs to its clips.
2. A channel paused and resumed from its card. A `read` key sees a read-only console: no
   stream keys, no create, delete, rotate or pause buttons.
3. A webhook created in Settings shows its secret once, a ping reaches a local receiver and
   shows in its delivery log, and a redelivery sends the same event again; a 410 disables it
   and "Enable again" brings it back. API keys are made
   and revoked there too, and the retention limits set (a bad value shown beside its field).
4. Every page, at desktop (1280x800) and phone (390x844) widths: no serious or critical axe-core
   violations, nothing wider than the screen, and a screenshot under tests/artifacts/.
5. Real OBS Studio (../shared/OBS.md), configured with the server and key the console showed,
   streams with its default 250-frame keyframe interval; its moment reaches the feed and the
   clip starts on a keyframe.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bench.broadcast import Moment, make_broadcast
from conftest import stack_on_fresh_database

pytestmark = pytest.mark.e2e

AXE = Path(__file__).with_name("vendor") / "axe.min.js"
ARTIFACTS = Path(__file__).with_name("artifacts")
VIEWS = ("live", "channels", "vods", "settings")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CLIP_WAIT_MS = 180_000  # a 45 s broadcast pushed in real time, on 2 busy cores


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_admin_dsn, redis_url):
    """A `livecut up` of its own, on a fresh database; private URLs allowed for the loopback
    webhook receiver."""
    with stack_on_fresh_database(
        tmp_path_factory.mktemp("console") / "data", pg_admin_dsn, redis_url,
        api_key=f"key-{secrets.token_hex(8)}", extra_args=["--allow-private-urls", "--heartbeat-timeout", "10"],
    ) as stack:
        yield stack


class Console:
    """A browser context on the console, logged in through the key prompt."""

    def __init__(self, browser, stack, key: str, viewport: dict = DESKTOP):
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.page.goto(f"{stack.base_url}/")
        self.page.fill("[data-testid=key-input]", key)
        self.page.click("[data-testid=key-submit]")
        self.page.wait_for_selector("#main:not([hidden])")
        assert self.page.evaluate("sessionStorage.getItem('livecut.key')") == key

    def show(self, view: str) -> None:
        self.page.click(f"#tab-{view}")
        self.page.wait_for_selector(f"#{view}-view:not([hidden])")

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"uncaught errors in the page: {self.errors}"


@pytest.fixture
def console(stack, browser):  # the stack first: asyncio.run is refused once Playwright runs a loop
    opened: list[Console] = []

    def open_console(key: str | None = None, viewport: dict = DESKTOP) -> Console:
        c = Console(browser, stack, key or stack.api_key, viewport)
        opened.append(c)
        return c

    yield open_console
    for c in opened:
        c.close()


def _axe_violations(page) -> list[dict]:
    """Serious and critical axe-core violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in found if v["impact"] in ("serious", "critical")
    ]


def _decode_qr(png: bytes) -> str:
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return text


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky header lands mid-page in a full-page shot
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# -- 1. from the form to a playing clip --------------------------------------------------

@pytest.fixture(scope="module")
def broadcast(tmp_path_factory, ffmpeg, espeak) -> Path:
    path = tmp_path_factory.mktemp("broadcast") / "broadcast.mp4"
    make_broadcast(path, duration=45.0, moments=[Moment(t=20.0, kind="loud")])
    return path


def test_an_rtmp_channel_registered_in_the_console_gives_a_clip_that_plays(console, stack, broadcast, ffmpeg):
    c = console()
    page = c.page
    c.show("channels")

    # the API's validation errors show next to the field they are about
    page.fill("[data-testid=channel-name]", "pulled")
    page.select_option("[data-testid=channel-source]", "url")
    assert page.locator("[data-testid=channel-url]").is_visible()
    page.click("[data-testid=channel-create]")
    page.wait_for_selector("#channel-url-error:not([hidden])")
    assert "url" in page.inner_text("#channel-url-error")
    assert page.get_attribute("[data-testid=channel-url]", "aria-invalid") == "true"
    page.select_option("[data-testid=channel-source]", "rtmp")
    page.fill("[data-testid=channel-name]", "")
    page.click("[data-testid=channel-create]")
    page.wait_for_selector("#channel-name-error:not([hidden])")
    assert "name" in page.inner_text("#channel-name-error")
    page.click("#channel-form .advanced summary")
    page.fill("#channel-settings", '{"clip": {"pre_roll": "long"}}')
    page.fill("[data-testid=channel-name]", "studio")
    page.click("[data-testid=channel-create]")
    page.wait_for_selector("#channel-settings-error:not([hidden])")
    assert "pre_roll" in page.inner_text("#channel-settings-error")
    assert stack.api("GET", "/api/channels").json()["items"] == []  # nothing was registered

    # a valid one: the OBS values show, with the keyframe advice
    page.fill("#channel-settings", "")
    page.select_option("#channel-profile", "just_chatting")
    page.click("[data-testid=channel-create]")
    page.wait_for_selector("[data-testid=stream-key]")
    stream_key = page.inner_text("[data-testid=stream-key]").strip()
    rtmp_url = page.inner_text("[data-testid=rtmp-url]").strip()
    assert rtmp_url == f"rtmp://127.0.0.1:{stack.rtmp_port}/live"
    assert "2 s" in page.inner_text("#ingest-panel") and "/whip/" in page.inner_text("[data-testid=whip-url]")
    (channel,) = stack.api("GET", "/api/channels").json()["items"]
    assert channel["name"] == "studio" and channel["settings"].get("profile") == "just_chatting", channel
    assert not any(stream_key in u for u in c.urls), "the stream key never goes into a URL"
    whip_command = page.inner_text("[data-testid=whip-command]")
    assert f"-f whip -authorization {stream_key} " in whip_command and "/whip/" in whip_command
    # a phone app scans the RTMP URL with its key: read the drawn code back with OpenCV
    assert page.locator("[data-testid=ingest-qr]").count() == 0
    page.click("[data-testid=qr-toggle]")
    assert _decode_qr(page.locator("[data-testid=ingest-qr]").screenshot()) == f"{rtmp_url}/{stream_key}"
    card = page.locator(f"[data-testid=channel-card][data-id='{channel['id']}']")
    card.wait_for()

    push = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(broadcast), "-c", "copy", "-f", "flv",
         f"{rtmp_url}/{stream_key}"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        # its status and health, live: a chart once two samples are in
        page.wait_for_function(
            "(id) => document.querySelector(`[data-testid=channel-card][data-id='${id}']`).dataset.status === 'live'",
            arg=channel["id"], timeout=60_000,
        )
        page.wait_for_function(
            "(id) => document.querySelectorAll(`[data-id='${id}'] [data-metric=seconds_buffered] polyline`).length === 1",
            arg=channel["id"], timeout=30_000,
        )
        assert card.locator("[data-metric=seconds_buffered] .metric-value").inner_text().endswith(" s")
        _screenshot(page, "channels-live-desktop")

        # the clip arrives in the feed without a reload
        c.show("live")
        page.evaluate("window.__noReload = true")
        clip_card = page.locator(f"#clips [data-testid=clip-card][data-channel='{channel['id']}']").first
        try:
            clip_card.wait_for(timeout=CLIP_WAIT_MS)
        except Exception:
            pytest.fail(f"no clip reached the feed: {stack.api('GET', '/api/channels').json()}\n{stack.log_tail()}")
        assert page.evaluate("window.__noReload") is True, "the page was reloaded"
        assert push.wait(90) == 0, push.stderr.read()
    finally:
        if push.poll() is None:
            push.kill()
            push.wait()

    # its video plays: data for the current frame, and time advancing
    video = clip_card.locator("video")
    video.scroll_into_view_if_needed()
    page.evaluate("(v) => { v.muted = true; return v.play(); }", video.element_handle())
    page.wait_for_function("(v) => v.readyState >= 2 && v.currentTime > 0.3", arg=video.element_handle(), timeout=30_000)
    first = page.evaluate("(v) => v.currentTime", video.element_handle())
    page.wait_for_function("([v, t]) => v.currentTime > t + 0.3", arg=[video.element_handle(), first], timeout=15_000)
    assert page.evaluate("(v) => v.error", video.element_handle()) is None
    # and its captions track loads, with cues inside the clip
    track = page.wait_for_function(
        """(v) => {
             const t = v.querySelector("track");
             if (!t || t.readyState !== 2 || !t.track.cues || !t.track.cues.length) return null;
             return {src: t.src, kind: t.kind, cues: [...t.track.cues].map(c => [c.startTime, c.endTime, c.text])};
           }""",
        arg=video.element_handle(), timeout=30_000,
    ).json_value()
    assert track["kind"] == "captions" and "sig=" in track["src"] and track["cues"], track
    violations = _axe_violations(page)
    assert not violations, ("live with a clip", violations)
    _screenshot(page, "live-clip-desktop")

    # search finds it by a word said in it; clearing the box brings the live list back
    clip_id = clip_card.get_attribute("data-id")
    clip = stack.api("GET", f"/api/clips/{clip_id}").json()
    word = max((w.strip(".,!?") for w in clip["transcript"].split() if w.strip(".,!?").isalpha()), key=len)
    page.fill("[data-testid=search-input]", word)
    page.press("[data-testid=search-input]", "Enter")
    page.wait_for_selector(f"#search-results [data-testid=clip-card][data-id='{clip_id}']", timeout=15_000)
    page.fill("[data-testid=search-input]", "")
    page.press("[data-testid=search-input]", "Enter")
    page.wait_for_selector("#search-results", state="hidden")
    # the time filter reloads the list: a clip cut a minute ago is in the last hour
    with page.expect_request(lambda r: "/api/clips?" in r.url and "since=" in r.url):
        page.select_option("#since", "1")
    page.wait_for_selector(f"#clips [data-testid=clip-card][data-id='{clip_id}']", timeout=15_000)

    # the clip page: why it was clipped, a bar per signal that fired, with its contribution
    clip_card.locator("a.details").click()
    page.wait_for_selector("#clip-page:not([hidden])")
    assert page.url.endswith(f"#clip/{clip_id}")
    bars = page.locator("[data-testid=signal-chart] [data-testid=signal-bar]")
    assert clip["signals"] and bars.count() == len(clip["signals"]), (clip["signals"], bars.count())
    for name, value in clip["signals"].items():
        bar = page.locator(f"[data-testid=signal-bar][data-signal='{name}']")
        assert bar.locator(".sig-num").inner_text() == f"{'+' if value > 0 else ''}{value:.2f}"
        assert bar.locator(".sig-bar").evaluate("(b) => b.getBoundingClientRect().width") > 0
    assert page.locator("#signal-timeline .tl-mark").count() == len(clip["triggers"])
    page.locator("#clip-cues .cue").first.wait_for(timeout=15_000)
    assert page.get_attribute("#clip-video track", "kind") == "captions"
    # an export, from queued to a download link
    page.select_option("#export-aspect", "16:9")
    page.select_option("#export-reframe", "none")
    page.select_option("#export-captions", "none")
    page.click("[data-testid=export-create]")
    page.wait_for_selector("[data-testid=export]", timeout=15_000)
    page.wait_for_selector("[data-testid=export][data-status=done] a[download]", timeout=CLIP_WAIT_MS)
    href = page.get_attribute("[data-testid=export][data-status=done] a[download]", "href")
    assert "sig=" in href and f"/api/clips/{clip_id}/exports/" in href
    _screenshot(page, "clip-desktop")

    # the channel's recent events show the moment
    c.show("channels")
    card.locator(".ch-events summary").click()
    card.locator(".events .event").first.wait_for(timeout=15_000)
    assert "moment" in card.locator(".events").inner_text().lower()
    assert card.locator(f".events a[href='#clip/{clip_id}']").count() == 1  # the moment links to its clip

    # a new stream key, after a confirmation
    page.once("dialog", lambda d: d.accept())
    card.locator("[data-testid=rotate-key]").click()
    page.wait_for_function(
        "(old) => { const k = document.querySelector('[data-testid=stream-key]'); return k && k.textContent !== old; }",
        arg=stream_key,
    )
    assert page.inner_text("[data-testid=stream-key]").strip() != stream_key

    # delete: nothing happens when the confirmation is dismissed
    page.once("dialog", lambda d: d.dismiss())
    card.locator("[data-testid=channel-delete]").click()
    page.wait_for_timeout(500)
    assert card.is_visible() and len(stack.api("GET", "/api/channels").json()["items"]) == 1
    page.once("dialog", lambda d: d.accept())
    card.locator("[data-testid=channel-delete]").click()
    card.wait_for(state="detached")
    assert stack.api("GET", "/api/channels").json()["items"] == []
    assert page.locator("#ingest-panel").is_hidden()
    assert not any(stack.api_key in u for u in c.urls), "the API key never goes into a URL"


# -- 1b. a VOD by URL -----------------------------------------------------------------------

def test_a_vod_submitted_in_the_console_runs_to_its_clips(console, stack, broadcast):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(broadcast.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = console()
        page = c.page
        c.show("vods")
        page.fill("[data-testid=vod-urls]", f"http://127.0.0.1:{server.server_address[1]}/{broadcast.name}")
        page.click("[data-testid=vod-submit]")
        job = page.locator("[data-testid=vod-job]").first
        job.wait_for(timeout=30_000)
        assert job.get_attribute("data-status") in ("queued", "running", "done")
        page.wait_for_selector("[data-testid=vod-job][data-status=done]", timeout=CLIP_WAIT_MS)
        job_id = job.get_attribute("data-id")
        clips = stack.api("GET", f"/api/clips?vod_id={job_id}").json()["items"]
        assert clips, stack.api("GET", f"/api/vods/{job_id}").json()
        page.wait_for_function(
            "([id, n]) => document.querySelectorAll(`[data-testid=vod-job][data-id='${id}'] [data-testid=clip-card]`).length === n",
            arg=[job_id, len(clips)], timeout=30_000,
        )
        assert job.locator(".job-pct").inner_text() == "100%"

        # the feed filtered by this job shows its clips, labelled with its name
        c.show("live")
        page.wait_for_selector(f"#channel option[value='vod:{job_id}']", state="attached", timeout=20_000)
        page.select_option("#channel", f"vod:{job_id}")
        page.wait_for_function(
            "(n) => document.querySelectorAll('#clips [data-testid=clip-card]').length === n", arg=len(clips),
            timeout=30_000,
        )
        shown = page.eval_on_selector_all("#clips [data-testid=clip-card]", "cards => cards.map(c => c.dataset.id)")
        assert sorted(shown) == sorted(clip["id"] for clip in clips)
        name = stack.api("GET", f"/api/vods/{job_id}").json()["name"]
        assert set(page.locator("#clips [data-testid=clip-card] .channel-name").all_inner_texts()) == {name}
        page.select_option("#channel", "*")
    finally:
        server.shutdown()
        server.server_close()


# -- 2. a read key ----------------------------------------------------------------------

def test_a_channel_is_paused_and_resumed_from_its_card(console, stack):
    made = stack.api("POST", "/api/channels", json={"name": "napping", "source": "rtmp"}).json()
    path = f"/api/channels/{made['id']}"
    try:
        c = console()
        page = c.page
        c.show("channels")
        selector = f"[data-testid=channel-card][data-id='{made['id']}']"
        card = page.locator(selector)
        card.wait_for()
        assert card.locator("[data-testid=channel-resume]").count() == 0
        pause = card.locator("[data-testid=channel-pause]")
        assert pause.inner_text() == "Pause" and "napping" in pause.get_attribute("aria-label")
        pause.focus()  # a plain button: reachable and pressed from the keyboard
        assert page.evaluate("document.activeElement.dataset.testid") == "channel-pause"
        page.keyboard.press("Enter")
        page.wait_for_selector(f"{selector}[data-status=paused]")
        got = stack.api("GET", path).json()
        assert (got["status"], got["paused"]) == ("paused", True)
        # the supervisor stops its actor meanwhile; polls go on showing it paused
        page.wait_for_timeout(5_000)
        assert card.get_attribute("data-status") == "paused" and card.locator(".badge").text_content() == "paused"
        assert stack.api("GET", path).json()["status"] == "paused"

        resume = card.locator("[data-testid=channel-resume]")
        assert resume.inner_text() == "Resume"
        resume.click()
        page.wait_for_selector(f"{selector}:not([data-status=paused])")
        assert card.locator("[data-testid=channel-pause]").is_visible()
        got = stack.api("GET", path).json()
        assert got["paused"] is False and got["status"] != "paused"

        page.once("dialog", lambda d: d.accept())
        card.locator("[data-testid=channel-delete]").click()
        card.wait_for(state="detached")
        assert stack.api("GET", path).status_code == 404
    finally:
        stack.api("DELETE", path)


def test_a_read_key_sees_a_read_only_console(console, stack):
    made = stack.api("POST", "/api/channels", json={"name": "watched", "source": "rtmp"}).json()
    stream_key = made["ingest"]["stream_key"]
    read_key = stack.api("POST", "/api/keys", json={"scope": "read", "name": "viewer"}).json()["key"]
    try:
        c = console(read_key)
        page = c.page
        assert page.evaluate("document.body.dataset.scope") == "read"
        c.show("channels")
        page.locator(f"[data-testid=channel-card][data-id='{made['id']}']").wait_for()
        for view in VIEWS:
            c.show(view)
            page.wait_for_timeout(300)
            for testid in ("channel-create", "channel-name", "stream-key", "rtmp-url", "rotate-key", "channel-delete",
                           "channel-pause", "channel-resume",
                           "vod-submit", "vod-urls", "webhook-create", "key-create",
                           "retention-save", "retention-days", "retention-gb"):
                assert page.locator(f"[data-testid={testid}]:visible").count() == 0, (view, testid)
            assert page.locator("#main button:visible", has_text="Create").count() == 0, view
            assert stream_key not in page.content(), view
        c.show("settings")
        assert "admin key" in page.inner_text("#settings-view")
        page.wait_for_function("() => document.getElementById('retention-now').textContent !== ''")  # shown, read only
        c.show("channels")
        assert "read only" in page.inner_text("#channels-view")
    finally:
        stack.api("DELETE", f"/api/channels/{made['id']}")


# -- 3. webhooks and keys in Settings --------------------------------------------------------

@pytest.fixture
def receiver():
    """A loopback HTTP server that records each POST's headers and body and answers with the
    status in ``answer[0]`` (200 at first)."""
    got: list[dict] = []
    answer = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            got.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "raw": body,
                        "body": json.loads(body)})
            self.send_response(answer[0])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got, answer
    server.shutdown()
    server.server_close()


def test_a_webhook_made_in_settings_delivers_and_keys_are_made_and_revoked(console, stack, receiver):
    from standardwebhooks import Webhook

    url, got, answer = receiver
    c = console()
    page = c.page
    c.show("settings")

    page.fill("[data-testid=webhook-url]", "ftp://example.org/x")
    page.click("[data-testid=webhook-create]")
    page.wait_for_selector("#webhook-url-error:not([hidden])")
    assert "url" in page.inner_text("#webhook-url-error")

    page.fill("[data-testid=webhook-url]", url)
    page.check("#webhook-form input[value='channel.status']")
    page.click("[data-testid=webhook-create]")
    secret = page.inner_text("[data-testid=webhook-secret]").strip()
    assert secret.startswith("whsec_")
    (hook,) = stack.api("GET", "/api/webhooks").json()["items"]
    assert hook["url"] == url and sorted(hook["events"]) == ["channel.status", "clip.created"], hook
    assert secret not in json.dumps(hook)
    # shown once: gone once dismissed, and not there after a reload
    page.click("#webhook-secret-box button:has-text('I have saved it')")
    assert page.locator("[data-testid=webhook-secret]").count() == 0
    page.reload()
    page.wait_for_selector("#settings-view:not([hidden])")
    row = page.locator(f"[data-testid=webhook][data-id='{hook['id']}']")
    row.wait_for()
    assert secret not in page.content()

    # a ping reaches the receiver, signed, and shows as delivered in the log
    row.locator("[data-testid=webhook-ping]").click()
    delivered = row.locator("[data-testid=webhook-delivery][data-status=delivered]")
    delivered.first.wait_for(timeout=30_000)
    assert len(got) == 1 and got[0]["body"]["type"] == "webhook.ping", got
    Webhook(secret).verify(got[0]["raw"], got[0]["headers"])  # signed with the secret the page showed
    assert got[0]["headers"]["webhook-id"] in row.locator("[data-testid=webhook-delivery]").first.inner_text()
    assert "HTTP 200" in delivered.first.inner_text()
    # redeliver: the same event again, with the same webhook-id
    row.locator("[data-testid=webhook-redeliver]").first.click()
    page.wait_for_function(
        "(id) => document.querySelectorAll(`[data-id='${id}'] [data-testid=webhook-delivery][data-status=delivered]`).length >= 2",
        arg=hook["id"], timeout=30_000,
    )
    assert [g["headers"]["webhook-id"] for g in got] == [got[0]["headers"]["webhook-id"]] * 2
    _screenshot(page, "settings-webhook-desktop")

    # a 410 disables it; once the receiver is fixed, "Enable again" brings it back
    answer[0] = 410
    row.locator("[data-testid=webhook-ping]").click()
    deadline = time.monotonic() + 30
    while stack.api("GET", f"/api/webhooks/{hook['id']}").json()["enabled"]:
        assert time.monotonic() < deadline, "a 410 did not disable the webhook"
        time.sleep(0.3)
    answer[0] = 200
    page.reload()
    page.wait_for_selector("#settings-view:not([hidden])")
    assert row.locator("[data-testid=webhook-ping]").is_disabled()
    row.locator("[data-testid=webhook-enable]").click()
    row.locator("[data-testid=webhook-enable]").wait_for(state="hidden")
    assert stack.api("GET", f"/api/webhooks/{hook['id']}").json()["enabled"]
    assert row.locator("[data-testid=webhook-ping]").is_enabled()

    # an API key with a scope: its secret once, then revoked after a confirmation
    page.select_option("[data-testid=key-scope]", "ingest")
    page.fill("[data-testid=key-name]", "obs box")
    page.click("[data-testid=key-create]")
    made = page.inner_text("[data-testid=new-key-secret]").strip()
    assert made.startswith("lck_")
    key_row = page.locator("[data-testid=api-key]", has_text="obs box")
    key_row.wait_for()
    assert "ingest" in key_row.inner_text() and made not in key_row.inner_text()
    assert stack.api("GET", "/api/whoami", headers={"Authorization": f"Bearer {made}"}).json()["scope"] == "ingest"
    page.once("dialog", lambda d: d.accept())
    key_row.locator("[data-testid=key-revoke]").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=api-key]')].some(r => r.textContent.includes('revoked'))"
    )
    deadline = time.monotonic() + 10
    while stack.api("GET", "/api/whoami", headers={"Authorization": f"Bearer {made}"}).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.5)

    # delete the webhook, after a confirmation
    page.once("dialog", lambda d: d.accept())
    row.locator("[data-testid=webhook-delete]").click()
    row.wait_for(state="detached")
    assert stack.api("GET", "/api/webhooks").json()["items"] == []


def test_retention_limits_are_set_in_settings(console, stack):
    own = stack.api("POST", "/api/channels", json={"name": "kept a week", "source": "rtmp",
                                                     "settings": {"retention": {"max_age_days": 7}}}).json()
    retention = "/api/settings/retention"
    try:
        c = console()
        page = c.page
        c.show("settings")
        page.wait_for_function("() => /clip/.test(document.getElementById('retention-usage').textContent)")
        usage = stack.api("GET", retention).json()["usage"]
        assert f"{usage['clips']} clip" in page.inner_text("[data-testid=retention-usage]")
        assert "No limits now" in page.inner_text("[data-testid=retention-now]")
        row = page.locator("[data-testid=retention-channel]", has_text="kept a week")  # read-only: its own limits
        assert "7 days" in row.inner_text()

        page.fill("[data-testid=retention-days]", "30")
        page.fill("[data-testid=retention-gb]", "2")  # GB of 10^9 bytes, as the label says
        page.click("[data-testid=retention-save]")
        page.wait_for_function("() => document.getElementById('retention-msg').textContent.startsWith('Saved')")
        assert stack.api("GET", retention).json()["limits"] == {"max_age_days": 30.0, "max_bytes": 2 * 10**9}
        assert "older than 30 days" in page.inner_text("[data-testid=retention-now]")
        page.reload()  # the page shows what is stored
        page.wait_for_selector("#settings-view:not([hidden])")
        page.wait_for_function("() => document.querySelector('[data-testid=retention-days]').value === '30'")
        assert page.input_value("[data-testid=retention-gb]") == "2"

        # a bad value: the API's error beside its field, and nothing changed
        page.fill("[data-testid=retention-gb]", "-1")
        page.click("[data-testid=retention-save]")
        page.wait_for_selector("#retention-gb-error:not([hidden])")
        assert "max_bytes" in page.inner_text("#retention-gb-error")
        assert page.get_attribute("[data-testid=retention-gb]", "aria-invalid") == "true"
        assert page.locator("#retention-days-error").is_hidden()
        assert "Not saved" in page.inner_text("#retention-msg")
        _screenshot(page, "settings-retention-error-desktop")
        assert stack.api("GET", retention).json()["limits"] == {"max_age_days": 30.0, "max_bytes": 2 * 10**9}

        # back to no limits: 0 and empty both mean none
        page.fill("[data-testid=retention-days]", "0")
        page.fill("[data-testid=retention-gb]", "")
        page.click("[data-testid=retention-save]")
        page.wait_for_function("() => document.getElementById('retention-msg').textContent.startsWith('Saved')")
        assert page.locator("#retention-gb-error").is_hidden()
        assert stack.api("GET", retention).json()["limits"] == {"max_age_days": 0.0, "max_bytes": 0}
    finally:
        stack.api("PUT", retention, json={})
        stack.api("DELETE", f"/api/channels/{own['id']}")


# -- 4. accessibility, phone width, screenshots ----------------------------------------------

def test_every_page_passes_axe_at_desktop_and_phone_width(console, stack, tmp_path, ffmpeg):
    # something on each page: a channel with its stream key shown, a clip-less VOD job, a webhook
    made = stack.api("POST", "/api/channels", json={"name": "axe", "source": "rtmp"}).json()
    hook = stack.api("POST", "/api/webhooks", json={"url": "http://127.0.0.1:9/nothing", "events": ["clip.created"]}).json()
    job = stack.api("POST", "/api/vods", json={"url": "http://127.0.0.1:9/nothing.mp4"})  # fails: unreachable
    assert job.status_code == 201, job.text
    try:
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            c = console(viewport=viewport)
            page = c.page
            # the key prompt, by keyboard alone
            page.click("#forget")
            page.wait_for_selector("#login:not([hidden])")
            assert page.evaluate("document.activeElement.dataset.testid") == "key-input"
            violations = _axe_violations(page)
            assert not violations, ("login", size, violations)
            _screenshot(page, f"login-{size}")
            page.keyboard.type(stack.api_key)
            page.keyboard.press("Enter")
            page.wait_for_selector("#main:not([hidden])")
            clips = stack.api("GET", "/api/clips?limit=1").json()["items"]
            for view in (*VIEWS, "clip"):
                if view == "clip":  # the clip page of the clip test 1 cut, when it ran
                    if not clips:
                        continue
                    page.evaluate("(id) => { location.hash = `#clip/${id}`; }", clips[0]["id"])
                    page.wait_for_selector("#clip-page:not([hidden])")
                else:
                    c.show(view)
                if view == "channels":
                    page.locator("[data-testid=channel-card]").first.wait_for()
                    page.locator(".ch-events summary").first.click()
                if view == "vods":
                    page.locator("[data-testid=vod-job]").first.wait_for()
                if view == "settings":
                    page.locator("[data-testid=webhook]").first.wait_for()
                    page.locator(".hook-log summary").first.click()
                page.wait_for_timeout(500)
                violations = _axe_violations(page)
                assert not violations, (view, size, violations)
                wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert wide <= 1, f"{view} is {wide}px wider than a {size} screen"
                _screenshot(page, f"{view}-{size}")
            # every control has a name (axe checks it too) and the tabs are reachable by keyboard
            page.focus("#tab-live")
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "tab-channels"
            page.keyboard.press("Enter")
            page.wait_for_selector("#channels-view:not([hidden])")
    finally:
        stack.api("DELETE", f"/api/channels/{made['id']}")
        stack.api("DELETE", f"/api/webhooks/{hook['id']}")


# -- 5. real OBS Studio, configured with what the console showed --------------------------------

def _obs_config(root: Path, server: str, stream_key: str, media: Path) -> Path:
    """The four files OBS reads (../shared/OBS.md): a profile with the custom server and key,
    simple output mode (x264 with OBS's default keyframe interval, 250 frames), and a scene
    with one media source playing ``media``. Returns the XDG_CONFIG_HOME to run OBS with."""
    obs = root / "obs-studio"
    profile = obs / "basic" / "profiles" / "lc"
    scenes = obs / "basic" / "scenes"
    profile.mkdir(parents=True)
    scenes.mkdir(parents=True)
    (obs / "global.ini").write_text(
        "[General]\nFirstRun=false\nEnableAutoUpdates=false\n\n"
        "[Basic]\nProfile=lc\nProfileDir=lc\nSceneCollection=lc\nSceneCollectionFile=lc\n"
    )
    (profile / "basic.ini").write_text(
        "[General]\nName=lc\n\n[Video]\nBaseCX=640\nBaseCY=360\nOutputCX=640\nOutputCY=360\nFPSType=0\nFPSCommon=30\n\n"
        "[Output]\nMode=Simple\n\n[SimpleOutput]\nVBitrate=1000\nABitrate=128\nStreamEncoder=x264\nPreset=veryfast\n"
    )
    (profile / "service.json").write_text(json.dumps(
        {"settings": {"server": server, "key": stream_key, "use_auth": False, "bwtest": False}, "type": "rtmp_custom"}
    ))
    item = {"name": "Media", "id": 1, "visible": True, "locked": False, "pos": {"x": 80.0, "y": 0.0},
            "scale": {"x": 1.5, "y": 1.5}, "rot": 0.0, "align": 5, "bounds_type": 0, "bounds": {"x": 0.0, "y": 0.0},
            "crop_left": 0, "crop_top": 0, "crop_right": 0, "crop_bottom": 0}
    (scenes / "lc.json").write_text(json.dumps({
        "current_scene": "Scene", "current_program_scene": "Scene", "name": "lc", "scene_order": [{"name": "Scene"}],
        "sources": [
            {"id": "scene", "versioned_id": "scene", "name": "Scene", "enabled": True,
             "settings": {"id_counter": 1, "custom_size": False, "items": [item]}},
            {"id": "ffmpeg_source", "versioned_id": "ffmpeg_source", "name": "Media", "enabled": True, "volume": 1.0,
             "muted": False, "monitoring_type": 0,
             "settings": {"is_local_file": True, "local_file": str(media), "looping": False,
                          "restart_on_activate": True, "close_when_inactive": False}},
        ],
    }))
    return root


def _obs_env(home: Path) -> dict[str, str]:
    """OBS's environment: importing cv2 (other tests do, in this process) points Qt at the
    plugins inside OpenCV's wheel, which OBS's own Qt cannot load ("could not load the Qt
    platform plugin xcb"); OBS must find Debian's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_")}
    return {**env, "XDG_CONFIG_HOME": str(home), "LIBGL_ALWAYS_SOFTWARE": "1"}


def test_real_obs_streams_into_a_channel_registered_in_the_console(console, stack, broadcast, tmp_path):
    from conftest import require_tool

    require_tool("obs")
    xvfb_run = require_tool("xvfb-run")
    c = console()
    page = c.page
    c.show("channels")
    page.fill("[data-testid=channel-name]", "real obs")
    page.click("[data-testid=channel-create]")
    stream_key = page.inner_text("[data-testid=stream-key]").strip()
    server = page.inner_text("[data-testid=rtmp-url]").strip()
    channel_id = next(ch["id"] for ch in stack.api("GET", "/api/channels").json()["items"] if ch["name"] == "real obs")

    home = _obs_config(tmp_path / "xdg", server, stream_key, broadcast)
    log = open(tmp_path / "obs.log", "wb")
    obs = subprocess.Popen(
        [xvfb_run, "-a", "-s", "-screen 0 1280x720x24", "obs", "--startstreaming", "--minimize-to-tray",
         "--disable-updater", "--disable-shutdown-check", "--disable-missing-files-check",
         "--profile", "lc", "--collection", "lc"],
        env=_obs_env(home),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        c.show("live")
        clip_card = page.locator(f"#clips [data-testid=clip-card][data-channel='{channel_id}']").first
        try:
            clip_card.wait_for(timeout=CLIP_WAIT_MS)
        except Exception:
            obs_log = (tmp_path / "obs.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"no clip from OBS: {stack.api('GET', f'/api/channels/{channel_id}').json()}\n"
                        f"OBS:\n{obs_log}\n{stack.log_tail()}")
    finally:
        import signal

        os.killpg(obs.pid, signal.SIGTERM)  # OBS, and the Xvfb that xvfb-run started
        try:
            obs.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(obs.pid, signal.SIGKILL)
            obs.wait(10)
        log.close()
    out = (tmp_path / "obs.log").read_text(errors="replace")
    assert "Streaming Start" in out or "successful" in out, out[-2000:]

    # OBS's keyframes come every 250 frames (8.3 s at 30 fps): the clip still holds the moment
    # with its pre-roll and starts on a keyframe, so it plays from its first frame
    clip = stack.api("GET", f"/api/clips/{clip_card.get_attribute('data-id')}").json()
    assert clip["stream_end"] - clip["stream_start"] >= 8.0, clip
    mp4 = tmp_path / "obs-clip.mp4"
    mp4.write_bytes(stack.api("GET", f"/api/clips/{clip['id']}/video").content)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0",
         str(mp4)], capture_output=True, text=True, check=True,
    ).stdout.split()
    packets = [(float(t), f) for t, f in (line.split(",")[:2] for line in probe if "," in line)]
    keyframes = [t for t, f in packets if "K" in f]
    assert packets and "K" in packets[0][1], packets[:3]  # starts on a keyframe: no grey first seconds
    if len(keyframes) > 1:
        assert max(b - a for a, b in zip(keyframes, keyframes[1:])) > 4.0, keyframes  # OBS's long GOPs indeed
    video = clip_card.locator("video")
    video.scroll_into_view_if_needed()
    page.evaluate("(v) => { v.muted = true; return v.play(); }", video.element_handle())
    page.wait_for_function("(v) => v.readyState >= 2 && v.currentTime > 0.3", arg=video.element_handle(), timeout=30_000)
    _screenshot(page, "live-obs-clip-desktop")
    stack.api("DELETE", f"/api/channels/{channel_id}")
