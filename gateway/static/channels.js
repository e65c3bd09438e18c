// livecut console, Channels view: register a channel, show what OBS needs to push to it, and
// each channel's status, health (small charts) and recent events, polled while the view is
// open. Uses what feed.js shares on window.livecut. No framework, no build step.
(function () {
  "use strict";

  const L = window.livecut;
  const $ = (id) => document.getElementById(id);
  const el = L.el;

  const POLL_MS = 4000; // the channel list, while this view is shown
  const EVENTS_EVERY = 2; // polls between event reloads of an opened channel
  const HISTORY = 45; // health samples kept per channel (3 minutes at POLL_MS)
  const EVENTS_SHOWN = 8;
  const METRICS = [
    // [health field, label, what it means]
    ["seconds_buffered", "Buffered", "seconds of the stream in the ring buffer: how far back a clip can reach"],
    ["ingest_lag", "Ingest lag", "wall-clock seconds the ring buffer is behind the source"],
    ["detector_lag", "Detector lag", "stream seconds the detectors are behind the ring buffer"],
  ];
  const FIELDS = ["name", "source", "url", "profile", "settings"]; // the form's, in order

  const state = {
    cards: new Map(), // channel id -> {row, li, history: {field: [numbers]}, events: <ol>, polls}
    timer: null,
    shown: false,
    ingestFor: null, // the channel whose stream key the ingest panel shows
  };

  // -- helpers -------------------------------------------------------------------------
  function seconds(v) {
    return `${(v || 0).toFixed(1)} s`;
  }

  // Copies `text`; the Clipboard API needs a secure context (localhost is one, a LAN address
  // over http is not), so fall back to a hidden textarea and execCommand.
  async function copy(text, button) {
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        ok = true;
      }
    } catch (_) {
      ok = false;
    }
    if (!ok) {
      const area = el("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.append(area);
      area.select();
      try {
        ok = document.execCommand("copy");
      } catch (_) {
        ok = false;
      }
      area.remove();
    }
    const label = button.textContent;
    button.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(() => (button.textContent = label), 1500);
  }

  // A value with a copy button: <code data-testid=TESTID> and a button labelled for it.
  function copyable(label, value, testid) {
    const row = el("div", "copy-row");
    const id = `copy-${testid || Math.random().toString(36).slice(2)}`;
    const name = el("span", "copy-label", label);
    name.id = `${id}-label`;
    const code = el("code", "copy-value", value);
    if (testid) code.dataset.testid = testid;
    code.setAttribute("aria-labelledby", name.id);
    const button = el("button", "small secondary", "Copy");
    button.type = "button";
    button.setAttribute("aria-label", `Copy ${label.toLowerCase()}`);
    button.addEventListener("click", () => copy(code.textContent, button));
    row.append(name, code, button);
    return row;
  }

  // The RTMP URL with its key as a QR code, for a phone app to scan; hidden until asked, since
  // it holds the key. Drawn by the vendored qrcode-generator (error correction M).
  function qrToggle(url) {
    const box = el("div", "qr");
    box.hidden = true;
    const button = el("button", "small secondary", "Show QR code");
    button.type = "button";
    button.dataset.testid = "qr-toggle";
    button.setAttribute("aria-expanded", "false");
    button.addEventListener("click", () => {
      const showing = box.hidden;
      if (showing && !box.firstChild) {
        const qr = window.qrcode(0, "M");
        qr.addData(url);
        qr.make();
        box.innerHTML = qr.createSvgTag({ cellSize: 4, margin: 4, scalable: true, alt: "QR code of the RTMP URL with the stream key" });
        box.firstChild.setAttribute("role", "img");
        box.firstChild.dataset.testid = "ingest-qr";
      }
      box.hidden = !showing;
      button.textContent = showing ? "Hide QR code" : "Show QR code";
      button.setAttribute("aria-expanded", String(showing));
    });
    const row = el("div");
    row.append(el("p", "muted", "Scan the RTMP URL and stream key into the app."), button, box);
    return row;
  }

  // A sparkline of the last samples, as inline SVG (decorative: the number is beside it).
  function sparkline(values) {
    const w = 120;
    const h = 28;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("width", String(w));
    svg.setAttribute("height", String(h));
    svg.setAttribute("aria-hidden", "true");
    svg.classList.add("spark");
    if (values.length < 2) return svg;
    const max = Math.max(1, ...values);
    const step = w / (HISTORY - 1);
    const x0 = w - step * (values.length - 1);
    const points = values.map((v, i) => `${(x0 + i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
    return svg;
  }

  // -- the ingest panel (one channel's OBS values, after create or rotate) ----------------
  function showIngest(channel) {
    const panel = $("ingest-panel");
    const body = $("ingest-body");
    const key = channel.ingest.stream_key;
    const server = channel.ingest.rtmp_url;
    const whip = new URL(`/whip/${encodeURIComponent(channel.id)}`, location.href).href;
    state.ingestFor = channel.id;
    $("ingest-title").textContent = `Stream into “${channel.name}”`;
    const steps = el("ol", "steps");
    const step = (...parts) => {
      const li = el("li");
      for (const p of parts) li.append(typeof p === "string" ? document.createTextNode(p) : p);
      steps.append(li);
    };
    step("In OBS: Settings → Stream. Service: ", el("strong", "", "Custom"),
      "; paste the server and stream key shown here.");
    step("Settings → Output. Output Mode: ", el("strong", "", "Advanced"), "; Streaming → Keyframe Interval: ",
      el("strong", "", "2 s"), ". OBS otherwise sends a keyframe only every 250 frames (about 8 s), and clips start at a keyframe.");
    step("Start Streaming. The channel below goes ", el("strong", "", "live"), " within seconds; clips appear in Live.");
    const obs = el("section", "ingest-part");
    obs.append(el("h4", "", "OBS (RTMP)"), copyable("Server", server, "rtmp-url"), copyable("Stream key", key, "stream-key"), steps);
    const webrtc = el("section", "ingest-part");
    webrtc.append(
      el("h4", "", "OBS 30+ or a browser (WHIP)"),
      copyable("WHIP URL", whip, "whip-url"),
      el("p", "muted", "OBS: Settings → Stream, Service: WHIP; Server: this URL; Bearer Token: the stream key."),
      // WebRTC carries H.264 without B-frames and Opus: the options livecut's WHIP test publishes with
      copyable("FFmpeg 8+", `ffmpeg -re -i input.mp4 -c:v libx264 -profile:v baseline -bf 0 -g 60 -c:a libopus -ar 48000 -ac 2 -f whip -authorization ${key} ${whip}`, "whip-command"),
    );
    const cli = el("section", "ingest-part");
    cli.append(el("h4", "", "Any RTMP client"), copyable("FFmpeg", `ffmpeg -re -i input.mp4 -c copy -f flv ${server}/${key}`, "ffmpeg-command"));
    const phone = el("section", "ingest-part");
    phone.append(el("h4", "", "A phone app (Larix Broadcaster and others)"), qrToggle(`${server}/${key}`));
    const warn = el("p", "muted", "The stream key is shown now and after a rotation only. Anyone with it can stream into this channel.");
    body.replaceChildren(obs, webrtc, cli, phone, warn);
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
    $("ingest-title").focus();
  }

  function hideIngest() {
    $("ingest-panel").hidden = true;
    $("ingest-body").replaceChildren();
    state.ingestFor = null;
  }

  // -- the registration form -------------------------------------------------------------
  function fieldError(field, text) {
    const input = $(`channel-${field}`);
    const error = $(`channel-${field}-error`);
    error.textContent = text || "";
    error.hidden = !text;
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  function clearErrors() {
    for (const f of FIELDS) fieldError(f, "");
    formMessage("");
  }

  function formMessage(text, kind) {
    const m = $("channel-msg");
    m.textContent = text || "";
    m.classList.toggle("error", kind === "error");
  }

  // Which field an API error is about: msgspec names it (`$.url`), our own messages start
  // with it ("url: ...", "name must not be empty").
  function errorField(message) {
    const first = /^(\w+)/.exec(message);
    if (first && FIELDS.includes(first[1])) return first[1];
    const at = /at `\$\.(\w+)/.exec(message);
    return at && FIELDS.includes(at[1]) ? at[1] : null;
  }

  function syncSourceFields() {
    const url = $("channel-source").value === "url";
    $("channel-url-field").hidden = !url;
    $("channel-source-help").textContent = url
      ? "livecut pulls the stream: a Twitch, YouTube or Kick channel, an HLS playlist, an RTSP camera or a media file."
      : "You push to livecut from OBS (RTMP or WHIP) or FFmpeg; the server URL and stream key are shown once created.";
  }

  async function create(ev) {
    ev.preventDefault();
    clearErrors();
    const source = $("channel-source").value;
    const body = { name: $("channel-name").value.trim(), source };
    if (source === "url") body.url = $("channel-url").value.trim();
    let settings = {};
    const raw = $("channel-settings").value.trim();
    if (raw) {
      try {
        settings = JSON.parse(raw);
      } catch (e) {
        fieldError("settings", `Not JSON: ${e.message}`);
        $("channel-settings").focus();
        return;
      }
      if (!settings || typeof settings !== "object" || Array.isArray(settings)) {
        fieldError("settings", "Settings must be a JSON object, e.g. {\"clip\": {\"pre_roll\": 8}}");
        $("channel-settings").focus();
        return;
      }
    }
    const profile = $("channel-profile").value;
    if (profile !== "default") settings = { ...settings, profile };
    if (Object.keys(settings).length) body.settings = settings;
    const button = $("channel-create");
    button.disabled = true;
    formMessage("Registering…");
    try {
      const channel = await L.api("/api/channels", { method: "POST", body: JSON.stringify(body) });
      $("channel-form").reset();
      syncSourceFields();
      formMessage(`Registered “${channel.name}”.`);
      place(channel);
      if (channel.ingest && channel.ingest.stream_key) showIngest(channel);
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      const field = errorField(e.message);
      if (field) {
        fieldError(field === "profile" ? "settings" : field, e.message);
        $(`channel-${field}`).focus();
        formMessage("Not registered: see the field marked above.", "error");
      } else {
        formMessage(`Not registered: ${e.message}`, "error");
      }
    } finally {
      button.disabled = false;
    }
  }

  // -- channel cards ---------------------------------------------------------------------
  function renderCard(row) {
    const li = el("li", "chcard");
    li.dataset.id = row.id;
    li.dataset.testid = "channel-card";
    const head = el("div", "ch-head");
    const title = el("h3", "ch-name");
    head.append(el("span", "badge"), title, el("span", "ch-source muted"));
    const actions = el("div", "ch-actions");
    if (L.allows("ingest")) {
      if (row.source === "rtmp") {
        const rotate = el("button", "small secondary", "New stream key");
        rotate.type = "button";
        rotate.dataset.testid = "rotate-key";
        rotate.addEventListener("click", () => rotateKey(row.id, rotate));
        actions.append(rotate);
      }
      // one button, Pause or Resume by the channel's state (fill sets its label and testid)
      const pause = el("button", "small secondary ch-pause");
      pause.type = "button";
      pause.addEventListener("click", () => setPaused(row.id, !state.cards.get(row.id).row.paused, pause));
      actions.append(pause);
      const del = el("button", "small danger", "Delete");
      del.type = "button";
      del.dataset.testid = "channel-delete";
      del.addEventListener("click", () => remove(row.id, del));
      actions.append(del);
    }
    head.append(actions);
    const reason = el("p", "ch-reason");
    const health = el("dl", "health");
    for (const [field, label, help] of METRICS) {
      const item = el("div", "metric");
      item.dataset.metric = field;
      const dt = el("dt", "", label);
      dt.title = help;
      const dd = el("dd");
      dd.append(el("span", "metric-value"), el("span", "metric-chart"));
      item.append(dt, dd);
      health.append(item);
    }
    const counts = el("div", "metric");
    counts.append(el("dt", "", "Clips"), el("dd", "metric-clips"));
    health.append(counts);
    const details = el("details", "ch-events");
    const summary = el("summary", "", "Recent events");
    const events = el("ol", "events");
    details.append(summary, events);
    details.addEventListener("toggle", () => {
      if (details.open) loadEvents(row.id);
    });
    li.append(head, reason, health, details);
    return li;
  }

  function fill(card) {
    const { row, li } = card;
    li.dataset.status = row.status;
    L.setBadge(li.querySelector(".badge"), row.status);
    li.querySelector(".ch-name").textContent = row.name;
    const pause = li.querySelector(".ch-pause");
    if (pause) {
      const verb = row.paused ? "Resume" : "Pause";
      pause.textContent = verb;
      pause.dataset.testid = row.paused ? "channel-resume" : "channel-pause";
      pause.setAttribute("aria-label", `${verb} “${row.name}”`);
      pause.title = row.paused
        ? "Start the channel's stream actor again: it takes publishes and cuts clips"
        : "Stop the channel's stream actor until resumed: publishes are refused, nothing is clipped";
    }
    li.querySelector(".ch-source").textContent =
      row.source === "rtmp" ? `RTMP/WHIP push · ${row.ingest ? row.ingest.rtmp_url : ""}` : row.url || "URL";
    const reason = li.querySelector(".ch-reason");
    reason.textContent = row.status_reason || "";
    reason.hidden = !row.status_reason;
    const h = row.health || {};
    for (const [field] of METRICS) {
      const item = li.querySelector(`[data-metric="${field}"]`);
      item.querySelector(".metric-value").textContent = row.health ? seconds(h[field]) : "–";
      item.querySelector(".metric-chart").replaceChildren(sparkline(card.history[field]));
    }
    li.querySelector(".metric-clips").textContent = row.health ? String(h.clips || 0) : "–";
  }

  // A channel from the API: update its card (and its health history) or add one.
  function place(row) {
    let card = state.cards.get(row.id);
    if (!card) {
      card = { row, li: renderCard(row), history: {}, polls: 0 };
      for (const [field] of METRICS) card.history[field] = [];
      state.cards.set(row.id, card);
      $("channel-list").append(card.li);
    }
    card.row = row;
    if (row.health) {
      for (const [field] of METRICS) {
        const list = card.history[field];
        list.push(Number(row.health[field]) || 0);
        if (list.length > HISTORY) list.shift();
      }
    }
    fill(card);
    $("channels-empty").hidden = state.cards.size > 0;
    return card;
  }

  async function loadEvents(id) {
    const card = state.cards.get(id);
    if (!card) return;
    const list = card.li.querySelector(".events");
    try {
      const { items } = await L.api(`/api/channels/${encodeURIComponent(id)}/events?limit=${EVENTS_SHOWN}`);
      list.replaceChildren();
      for (const ev of items) {
        const item = el("li", `event ${ev.kind}`);
        item.append(
          el("span", "badge", ev.kind.replace(/_/g, " ")),
          el("span", "ev-time", L.clock(ev.stream_time || 0)),
        );
        if (ev.score !== null && ev.score !== undefined) item.append(el("span", "ev-score", `score ${Math.round(ev.score * 100)}%`));
        if (ev.detail) item.append(el("span", "ev-detail", ev.detail));
        if (ev.clip_id) {
          const link = el("a", "ev-clip", "its clip");
          link.href = `#clip/${encodeURIComponent(ev.clip_id)}`;
          item.append(link);
        }
        const when = el("time", "ev-when muted", new Date(ev.created_at).toLocaleTimeString());
        when.dateTime = ev.created_at;
        item.append(when);
        list.append(item);
      }
      if (!items.length) list.append(el("li", "muted", "No events yet."));
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      list.replaceChildren(el("li", "error", `Could not load events: ${e.message}`));
    }
  }

  async function poll() {
    try {
      const { items } = await L.api("/api/channels");
      const ids = new Set(items.map((c) => c.id));
      for (const [id, card] of state.cards) {
        if (!ids.has(id)) {
          card.li.remove();
          state.cards.delete(id);
          if (state.ingestFor === id) hideIngest();
        }
      }
      for (const row of items) {
        const card = place(row);
        card.polls += 1;
        if (card.li.querySelector(".ch-events").open && card.polls % EVENTS_EVERY === 0) loadEvents(row.id);
      }
      $("channels-empty").hidden = state.cards.size > 0;
      $("channels-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      $("channels-updated").textContent = `Could not refresh: ${e.message}`;
    }
  }

  async function remove(id, button) {
    const card = state.cards.get(id);
    const name = card ? card.row.name : id;
    if (!window.confirm(`Delete the channel “${name}”? Its stream stops and its ring buffer is removed; its clips stay.`)) return;
    button.disabled = true;
    try {
      await L.api(`/api/channels/${encodeURIComponent(id)}`, { method: "DELETE" });
      if (card) card.li.remove();
      state.cards.delete(id);
      if (state.ingestFor === id) hideIngest();
      $("channels-empty").hidden = state.cards.size > 0;
      formMessage(`Deleted “${name}”.`);
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      button.disabled = false;
      L.notice(`Could not delete “${name}”: ${e.message}`);
    }
  }

  // Pause stops the channel's actor (a publisher is cut off) until Resume; both answer the
  // channel, whose card shows the new status at once.
  async function setPaused(id, paused, button) {
    const card = state.cards.get(id);
    const name = card ? card.row.name : id;
    const action = paused ? "pause" : "resume";
    button.disabled = true;
    try {
      place(await L.api(`/api/channels/${encodeURIComponent(id)}/${action}`, { method: "POST" }));
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      L.notice(`Could not ${action} “${name}”: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  async function rotateKey(id, button) {
    const card = state.cards.get(id);
    const name = card ? card.row.name : id;
    if (!window.confirm(`Make a new stream key for “${name}”? The old key stops working for new publishes at once.`)) return;
    button.disabled = true;
    try {
      const channel = await L.api(`/api/channels/${encodeURIComponent(id)}/stream-key/rotate`, { method: "POST" });
      place(channel);
      showIngest(channel);
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      L.notice(`Could not rotate the stream key of “${name}”: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  function startPolling() {
    clearInterval(state.timer);
    poll();
    state.timer = setInterval(poll, POLL_MS);
  }

  function stopPolling() {
    clearInterval(state.timer);
    state.timer = null;
  }

  // -- wiring --------------------------------------------------------------------------
  L.on("view", (view) => {
    state.shown = view === "channels";
    if (state.shown && L.key) startPolling();
    else stopPolling();
  });
  L.on("start", () => {
    // the scope is known now: cards are built with or without their buttons
    for (const card of state.cards.values()) card.li.remove();
    state.cards.clear();
    if (state.shown) startPolling();
  });
  L.on("stop", () => {
    stopPolling();
    hideIngest();
    for (const card of state.cards.values()) card.li.remove();
    state.cards.clear();
  });

  $("channel-form").addEventListener("submit", create);
  $("channel-source").addEventListener("change", syncSourceFields);
  $("ingest-close").addEventListener("click", hideIngest);
  syncSourceFields();
})();
