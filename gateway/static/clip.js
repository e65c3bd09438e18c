// livecut console, the clip page (#clip/ID): the player with captions, why it was clipped
// (each signal's contribution to the score, and when each fired within the clip), the
// transcript (click a line to seek), exports with their status and progress, download and delete.
// Uses what feed.js shares on window.livecut.
(function () {
  "use strict";

  const L = window.livecut;
  const $ = (id) => document.getElementById(id);
  const el = L.el;

  const EXPORT_POLL_MS = 2000; // while an export is queued or running
  const DONE = new Set(["done", "failed"]);

  const state = { id: null, clip: null, timer: null };

  function clipIdFromHash() {
    const m = /^#clip\/([^/&]+)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function seek(seconds) {
    const video = $("clip-video");
    video.currentTime = Math.max(0, seconds);
    video.play().catch(() => {}); // autoplay rules may refuse; the seek stays
  }

  // -- why it was clipped ------------------------------------------------------------------
  // One row per signal that fired: its contribution to the score's logit as a bar (negative
  // ones, such as music, to the left), and what it saw. Then a timeline of the clip with a
  // marker where each fired; a marker seeks the player there.
  function renderWhy(clip) {
    $("clip-score").textContent =
      `Score ${Math.round(clip.score * 100)}%: the fused probability that a person would clip this moment. ` +
      "Each signal below added this much to it (log-odds).";
    const chart = $("signal-chart");
    chart.replaceChildren();
    const fired = Object.entries(clip.signals || {}).sort((a, b) => b[1] - a[1]);
    const triggers = new Map((clip.triggers || []).map((t) => [t.name, t]));
    const max = Math.max(0.001, ...fired.map(([, v]) => Math.abs(v)));
    for (const [name, value] of fired) {
      const row = el("li", "sig-row");
      row.dataset.testid = "signal-bar";
      row.dataset.signal = name;
      const track = el("span", "sig-track");
      const bar = el("span", `sig-bar ${value < 0 ? "neg" : "pos"}`);
      bar.style.width = `${(Math.abs(value) / max) * 50}%`;
      track.append(bar);
      track.setAttribute("aria-hidden", "true");
      row.append(el("span", "sig-label", name), track, el("span", "sig-num", (value > 0 ? "+" : "") + value.toFixed(2)));
      const t = triggers.get(name);
      if (t) {
        const what = `at ${L.clock(t.t - clip.stream_start)} into the clip, value ${t.value.toFixed(2)}${t.detail ? `: “${t.detail}”` : ""}`;
        row.append(el("span", "sig-what muted", what));
      }
      chart.append(row);
    }
    if (!fired.length) chart.append(el("li", "muted", "No signal contributions were recorded for this clip."));

    const line = $("signal-timeline");
    line.replaceChildren();
    const span = Math.max(0.1, clip.stream_end - clip.stream_start);
    const rail = el("div", "tl-rail");
    const cursor = el("span", "tl-cursor");
    cursor.setAttribute("aria-hidden", "true");
    rail.append(cursor);
    for (const t of clip.triggers || []) {
      const at = t.t - clip.stream_start;
      const mark = el("button", "tl-mark", t.name);
      mark.type = "button";
      mark.style.left = `${Math.min(100, Math.max(0, (at / span) * 100))}%`;
      mark.setAttribute("aria-label", `Play from ${t.name} at ${L.clock(at)}`);
      mark.title = `${t.name} at ${L.clock(at)}`;
      mark.addEventListener("click", () => seek(at - 1));
      rail.append(mark);
    }
    line.append(rail, el("div", "tl-scale muted", `0:00 – ${L.clock(span)}`));
    line.hidden = !(clip.triggers || []).length;
  }

  // -- transcript ------------------------------------------------------------------------
  async function loadTranscript(id) {
    const list = $("clip-cues");
    list.replaceChildren();
    try {
      const t = await L.api(`/api/clips/${encodeURIComponent(id)}/transcript.json`);
      for (const cue of t.cues || []) {
        const li = el("li");
        const b = el("button", "cue", "");
        b.type = "button";
        b.append(el("span", "cue-time", L.clock(cue.start)), document.createTextNode(` ${cue.text.replace(/\n/g, " ")}`));
        b.addEventListener("click", () => seek(cue.start));
        li.append(b);
        list.append(li);
      }
      if (!(t.cues || []).length) list.append(el("li", "muted", t.text ? t.text : "Nothing was said in this clip."));
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      list.append(el("li", "error", `Could not load the transcript: ${e.message}`));
    }
  }

  // -- exports ---------------------------------------------------------------------------
  function renderExports(items) {
    const list = $("export-list");
    list.replaceChildren();
    for (const x of items) {
      const li = el("li", "export");
      li.dataset.testid = "export";
      li.dataset.status = x.status;
      const o = x.options || {};
      li.append(
        L.badge(x.status),
        el("span", "", `${o.aspect || ""} · ${o.reframe || ""} · captions ${o.captions || ""}`),
      );
      if (x.status === "queued") {
        const p = el("progress", "export-bar");
        p.setAttribute("aria-label", "Export queued");
        li.append(p); // indeterminate: nothing rendered yet
      }
      if (x.status === "running") {
        const done = x.progress || 0;
        const p = el("progress", "export-bar");
        p.max = 1;
        p.value = done;
        p.setAttribute("aria-label", "Export rendering");
        // floored, so a running export never says 100 %; the epsilon because 0.57 * 100 is 56.999…
        const percent = el("span", "export-percent", `${Math.floor(done * 100 + 1e-6)} %`);
        percent.dataset.testid = "export-progress";
        percent.setAttribute("aria-hidden", "true"); // the bar's value already says it
        const meter = el("span", ""); // one flex item: the bar and its figure wrap together
        meter.append(p, " ", percent);
        li.append(meter);
      }
      if (x.status === "done" && x.download_url) {
        const a = el("a", "", `Download ${x.width}x${x.height}`);
        a.href = x.download_url;
        a.setAttribute("download", "");
        li.append(a);
      }
      if (x.error) li.append(el("span", "error", x.error));
      list.append(li);
    }
    $("exports-empty").hidden = items.length > 0;
  }

  async function loadExports() {
    const id = state.id;
    try {
      const { items } = await L.api(`/api/clips/${encodeURIComponent(id)}/exports`);
      if (id !== state.id) return;
      renderExports(items);
      clearTimeout(state.timer);
      if (items.some((x) => !DONE.has(x.status))) state.timer = setTimeout(loadExports, EXPORT_POLL_MS);
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      $("export-msg").textContent = `Could not load exports: ${e.message}`;
    }
  }

  async function createExport(ev) {
    ev.preventDefault();
    const body = {
      aspect: $("export-aspect").value,
      reframe: $("export-reframe").value,
      captions: $("export-captions").value,
    };
    const msg = $("export-msg");
    msg.textContent = "";
    msg.classList.remove("error");
    try {
      await L.api(`/api/clips/${encodeURIComponent(state.id)}/exports`, { method: "POST", body: JSON.stringify(body) });
      msg.textContent = "Queued.";
      loadExports();
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      msg.textContent = `Not queued: ${e.message}`;
      msg.classList.add("error");
    }
  }

  async function deleteClip() {
    if (!state.clip || !window.confirm("Delete this clip? Its video, thumbnail and exports are removed for good.")) return;
    try {
      await L.api(`/api/clips/${encodeURIComponent(state.id)}`, { method: "DELETE" });
      for (const card of document.querySelectorAll(`.clip[data-id="${CSS.escape(state.id)}"]`)) card.remove();
      location.hash = "#live";
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      L.notice(`Could not delete the clip: ${e.message}`);
    }
  }

  // -- the page ----------------------------------------------------------------------------
  async function open(id) {
    state.id = id;
    state.clip = null;
    clearTimeout(state.timer);
    $("clip-page").hidden = true;
    $("clip-error").hidden = true;
    $("clip-title").textContent = "Clip";
    let clip;
    try {
      clip = await L.api(`/api/clips/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      $("clip-error").textContent = `Could not load the clip: ${e.message}`;
      $("clip-error").hidden = false;
      return;
    }
    if (id !== state.id) return;
    state.clip = clip;
    const where = clip.channel_id ? `Channel “${L.channelName(clip.channel_id)}”` : `VOD job ${clip.vod_id}`;
    $("clip-title").textContent = `Clip ${L.clock(clip.stream_start)} – ${L.clock(clip.stream_end)}`;
    $("clip-where").textContent = `${where} · cut ${new Date(clip.created_at).toLocaleString()}`;
    const video = $("clip-video");
    video.replaceChildren();
    video.poster = clip.thumbnail_url;
    video.src = clip.video_url;
    if (clip.captions_url) {
      const track = document.createElement("track");
      Object.assign(track, { kind: "captions", srclang: "en", label: "Transcript", default: true, src: clip.captions_url });
      video.append(track);
    }
    $("clip-download").href = clip.video_url;
    renderWhy(clip);
    $("clip-page").hidden = false;
    loadTranscript(id);
    loadExports();
  }

  function close() {
    clearTimeout(state.timer);
    const video = $("clip-video");
    video.pause();
    state.id = null;
  }

  L.on("view", (view) => {
    if (view === "clip") {
      const id = clipIdFromHash();
      if (id && id !== state.id) open(id);
    } else if (state.id) {
      close();
    }
  });
  L.on("stop", close);

  $("clip-video").addEventListener("timeupdate", () => {
    const clip = state.clip;
    const cursor = document.querySelector("#signal-timeline .tl-cursor");
    if (!clip || !cursor) return;
    const span = Math.max(0.1, clip.stream_end - clip.stream_start);
    cursor.style.left = `${Math.min(100, ($("clip-video").currentTime / span) * 100)}%`;
  });
  $("export-form").addEventListener("submit", createExport);
  $("clip-delete").addEventListener("click", deleteClip);
})();
