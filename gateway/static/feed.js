// livecut feed page: recent clips over REST, new ones live over Socket.IO. No framework.
// The shell of the page (key, connection, Live/VODs switch) lives here too; what other
// scripts share is on window.livecut (see the end of this file).
(function () {
  "use strict";

  const KEY_STORE = "livecut.key";
  const PICK_STORE = "livecut.channel";
  // location.hash picks one ("#clip/ID": one clip's page); "live" when empty
  const VIEWS = ["live", "channels", "vods", "settings", "clip"];
  const SCOPES = ["read", "ingest", "admin"]; // each allows what comes before it
  const ALL = "*";
  const VOD = "vod:"; // the picker's value for one VOD job's clips: "vod:<job id>"
  const VODS_LISTED = 50; // the newest jobs offered in the picker
  const RECENT = 30; // clips loaded over REST on open / reconnect
  const MAX_SHOWN = 200;

  const $ = (id) => document.getElementById(id);
  const state = {
    key: "",
    channels: new Map(), // id -> ChannelView
    vods: new Map(), // id -> VodJob, the newest VODS_LISTED
    pick: localStorage.getItem(PICK_STORE) || ALL,
    subscribed: new Set(), // channel ids subscribed on the current socket
    lastSeen: new Map(), // channel id -> highest clip id received (resume point)
    clips: new Map(), // clip id -> <li>
    socket: null,
    refresh: null,
    scope: "read", // the key's, from GET /api/whoami: what the console offers
    hooks: { start: [], socket: [], stop: [], view: [] }, // what other scripts (vods.js...) hang on the page
  };

  // -- helpers -----------------------------------------------------------------------
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A status badge: its class picks the colour (console.css), its text says the state.
  function setBadge(node, kind, text = kind) {
    node.className = `badge ${kind}`;
    node.textContent = text;
    return node;
  }

  function badge(kind, text = kind) {
    return setBadge(document.createElement("span"), kind, text);
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
  }

  // Clip media URLs come signed by the server (?exp=&sig=, short-lived): the key never goes
  // into a URL. A link that has expired while the page was open is fetched again, once.
  function media(path) {
    return path;
  }

  function renewMediaOnError(video, clipId) {
    video.addEventListener(
      "error",
      async () => {
        try {
          const fresh = await api(`/api/clips/${encodeURIComponent(clipId)}`);
          video.poster = media(fresh.thumbnail_url);
          video.src = media(fresh.video_url);
        } catch (e) {
          console.warn("livecut: could not renew a clip's media link", e);
        }
      },
      { once: true },
    );
  }

  function setConn(stateName, text) {
    const c = $("conn");
    c.dataset.state = stateName;
    c.textContent = text;
  }

  function notice(text) {
    $("notice").textContent = text || "";
    $("notice").hidden = !text;
  }

  class Unauthorized extends Error {}

  // GET by default; `init` is fetch's (method, body...). A JSON body gets its content type.
  async function api(path, init = {}) {
    const headers = { Authorization: `Bearer ${state.key}`, ...(init.headers || {}) };
    if (typeof init.body === "string") headers["Content-Type"] = "application/json";
    const res = await fetch(path, { ...init, headers });
    if (res.status === 401) throw new Unauthorized("the API key was refused");
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error((body && body.error && body.error.message) || `HTTP ${res.status}`);
    return body;
  }

  function fire(hook, ...args) {
    for (const fn of state.hooks[hook]) {
      try {
        fn(...args);
      } catch (e) {
        console.error(`livecut ${hook} hook failed`, e);
      }
    }
  }

  // Whether the key's scope allows what needs `need` ("read", "ingest" or "admin").
  function allows(need) {
    return SCOPES.indexOf(state.scope) >= SCOPES.indexOf(need);
  }

  // Shows the controls the key's scope allows: [data-needs=SCOPE] only with it,
  // [data-lacks=SCOPE] (what to say instead) only without it.
  function applyScope() {
    document.body.dataset.scope = state.scope;
    for (const node of document.querySelectorAll("[data-needs]")) node.hidden = !allows(node.dataset.needs);
    for (const node of document.querySelectorAll("[data-lacks]")) node.hidden = allows(node.dataset.lacks);
  }

  async function loadScope() {
    try {
      state.scope = (await api("/api/whoami")).scope;
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      state.scope = "read"; // an older server: offer nothing that may be refused
    }
    applyScope();
  }

  // The channels whose clips the feed shows live; none while a VOD job is picked.
  function watched() {
    return state.pick === ALL ? [...state.channels.keys()] : state.channels.has(state.pick) ? [state.pick] : [];
  }

  // The VOD job picked, or null.
  function pickedVod() {
    return state.pick.startsWith(VOD) ? state.pick.slice(VOD.length) : null;
  }

  // The REST filters of the picker and the time select.
  function clipFilters(query) {
    const vod = pickedVod();
    if (vod) query.set("vod_id", vod);
    else if (state.pick !== ALL) query.set("channel_id", state.pick);
    if (since()) query.set("since", since());
    return query;
  }

  // -- key -----------------------------------------------------------------------------
  function askKey(message) {
    stop();
    $("main").hidden = true;
    $("picker").hidden = true;
    $("forget").hidden = true;
    $("tabs").hidden = true;
    $("login").hidden = false;
    $("key").value = "";
    $("key-error").textContent = message || "";
    $("key-error").hidden = !message;
    setConn("idle", "not connected");
    $("key").focus();
  }

  function stop() {
    if (state.socket) state.socket.disconnect();
    state.socket = null;
    state.subscribed.clear();
    clearInterval(state.refresh);
    fire("stop");
  }

  // -- channels ------------------------------------------------------------------------
  async function loadChannels() {
    const [{ items }, vods] = await Promise.all([api("/api/channels"), api(`/api/vods?limit=${VODS_LISTED}`)]);
    state.channels = new Map(items.map((c) => [c.id, c]));
    state.vods = new Map(vods.items.map((j) => [j.id, j]));
    const select = $("channel");
    const current = state.pick;
    select.replaceChildren(new Option(`All channels (${items.length})`, ALL)); // live clips only
    const live = el("optgroup");
    live.label = "Channels";
    for (const c of items) live.append(new Option(c.name, c.id));
    const jobs = el("optgroup");
    jobs.label = "VOD jobs";
    for (const j of vods.items) jobs.append(new Option(j.name, VOD + j.id));
    if (items.length) select.append(live);
    if (vods.items.length) select.append(jobs);
    const vod = pickedVod();
    if (current !== ALL && !state.channels.has(current) && !(vod && state.vods.has(vod))) state.pick = ALL;
    select.value = state.pick;
    renderChannels();
    for (const li of state.clips.values()) fillChannelName(li);
  }

  function renderChannels() {
    const list = $("channels");
    list.replaceChildren();
    for (const id of watched()) {
      const c = state.channels.get(id);
      const li = el("li", "chan");
      li.append(badge(c.status), el("span", "name", c.name));
      const h = c.health;
      if (c.status === "live" && h) {
        li.append(el("span", "lag", `lag ${h.ingest_lag.toFixed(1)}s · ${h.detector_lag.toFixed(1)}s`));
      } else if (c.status_reason) {
        li.append(el("span", "reason", c.status_reason));
      }
      list.append(li);
    }
  }

  // -- clips ---------------------------------------------------------------------------
  function fillChannelName(li) {
    const c = state.channels.get(li.dataset.channel);
    li.querySelector(".channel-name").textContent = c ? c.name : li.dataset.channel;
  }

  // A clip card. `label` names where it came from (a VOD job's clips pass the job's name);
  // without it, the clip's channel.
  function renderClip(clip, { label } = {}) {
    const li = $("clip-template").content.firstElementChild.cloneNode(true);
    li.dataset.id = clip.id;
    if (clip.channel_id) li.dataset.channel = clip.channel_id;
    const video = li.querySelector("video");
    video.poster = media(clip.thumbnail_url);
    video.src = media(clip.video_url);
    renewMediaOnError(video, clip.id);
    const details = li.querySelector(".details");
    details.href = `#clip/${encodeURIComponent(clip.id)}`;
    if (clip.captions_url) {
      // the transcript, timed to the clip (WebVTT), shown as captions
      const track = document.createElement("track");
      Object.assign(track, { kind: "captions", srclang: "en", label: "Transcript", default: true });
      track.src = media(clip.captions_url);
      video.append(track);
    }
    if (label !== undefined) li.querySelector(".channel-name").textContent = label;
    else fillChannelName(li);
    // the fused score is the probability that a person would clip this moment
    li.querySelector(".score").textContent = `score ${Math.round(clip.score * 100)}%`;
    const length = clip.stream_end - clip.stream_start;
    li.querySelector(".range").textContent =
      `${clock(clip.stream_start)} – ${clock(clip.stream_end)} (${Math.round(length)} s)`;
    const created = new Date(clip.created_at);
    const time = li.querySelector(".created");
    time.dateTime = clip.created_at;
    time.textContent = created.toLocaleString();
    const signals = li.querySelector(".signals");
    const fired = Object.entries(clip.signals || {}).sort((a, b) => b[1] - a[1]);
    const triggers = new Map((clip.triggers || []).map((s) => [s.name, s]));
    for (const [name, value] of fired) {
      // the contribution to the score's logit (negative: context such as music that lowered it),
      // and what fired (the keyword heard, the HUD text read...)
      const chip = el("li", "signal");
      chip.append(el("span", "sig-name", name), el("span", "sig-value", (value > 0 ? "+" : "") + value.toFixed(1)));
      const trigger = triggers.get(name);
      if (trigger) {
        chip.title = `${name} at ${clock(trigger.t)}: value ${trigger.value.toFixed(2)}`;
        if (trigger.detail) chip.append(el("span", "sig-detail", trigger.detail));
      }
      signals.append(chip);
    }
    const transcript = li.querySelector(".transcript");
    if (clip.transcript && clip.transcript.trim()) transcript.textContent = clip.transcript.trim();
    else transcript.remove();
    return li;
  }

  // renderClip's options for a clip of a listed VOD job: the job's name as its label.
  function source(clip) {
    const job = clip.vod_id && state.vods.get(clip.vod_id);
    return job ? { label: job.name } : {};
  }

  function addClip(clip, { fresh = false } = {}) {
    const vod = pickedVod();
    if (vod ? clip.vod_id !== vod : !watched().includes(clip.channel_id)) return;
    if (!vod) {
      const seen = state.lastSeen.get(clip.channel_id);
      if (!seen || clip.id > seen) state.lastSeen.set(clip.channel_id, clip.id);
    }
    if (state.clips.has(clip.id)) return;
    const li = renderClip(clip, source(clip));
    if (fresh) li.classList.add("fresh");
    // newest first, ordered by (time-ordered) clip id
    const list = $("clips");
    let before = null;
    for (const other of list.children) {
      if (other.dataset.id < clip.id) {
        before = other;
        break;
      }
    }
    list.insertBefore(li, before);
    state.clips.set(clip.id, li);
    while (list.children.length > MAX_SHOWN) {
      const last = list.lastElementChild;
      state.clips.delete(last.dataset.id);
      last.remove();
    }
    $("empty").hidden = true;
  }

  // The time filter: clips cut after this instant (ISO), or "" for any time.
  function since() {
    const hours = Number($("since").value);
    return hours > 0 ? new Date(Date.now() - hours * 3600 * 1000).toISOString() : "";
  }

  async function loadRecent() {
    const vod = pickedVod();
    if (!vod && !watched().length) {
      $("empty").hidden = state.clips.size > 0;
      return;
    }
    const { items } = await api(`/api/clips?${clipFilters(new URLSearchParams({ limit: String(RECENT) }))}`);
    for (const clip of items) addClip(clip);
    $("empty").hidden = state.clips.size > 0;
  }

  // -- search --------------------------------------------------------------------------
  // A query replaces the live list with the best matches (in the picked channel, if any);
  // an empty one brings the live list back.
  async function search(q) {
    const results = $("search-results");
    const status = $("search-status");
    results.replaceChildren();
    const searching = q.length > 0;
    results.hidden = !searching;
    $("clips").hidden = searching;
    $("empty").hidden = searching || state.clips.size > 0;
    status.hidden = !searching;
    if (!searching) return;
    status.textContent = "Searching…";
    const query = clipFilters(new URLSearchParams({ q, limit: "50" }));
    try {
      const { items } = await api(`/api/clips?${query}`);
      for (const clip of items) results.append(renderClip(clip, source(clip)));
      status.textContent = items.length ? `${items.length} clip${items.length > 1 ? "s" : ""} match “${q}”, best first.`
        : `No clip's transcript matches “${q}”.`;
    } catch (e) {
      if (e instanceof Unauthorized) askKey("The API key was refused.");
      else status.textContent = `Search failed: ${e.message}`;
    }
  }

  // -- live ----------------------------------------------------------------------------
  function subscribe(channelId) {
    const socket = state.socket;
    if (!socket || !socket.connected || state.subscribed.has(channelId)) return;
    state.subscribed.add(channelId);
    const msg = { channel_id: channelId };
    const last = state.lastSeen.get(channelId);
    if (last) msg.last_clip_id = last; // resume: the server sends what we missed, in order
    socket.emit("subscribe", msg, (ack) => {
      if (ack && ack.ok) return;
      state.subscribed.delete(channelId);
      const err = (ack && ack.error) || { code: "error", message: "no answer" };
      if (err.code === "not_found") return; // deleted meanwhile; the next refresh drops it
      notice(`Live updates for a channel failed (${err.message}); retrying…`);
      setTimeout(() => {
        notice("");
        subscribe(channelId);
      }, 3000);
    });
  }

  function syncSubscriptions() {
    const want = new Set(watched());
    for (const id of [...state.subscribed]) {
      if (!want.has(id)) {
        state.subscribed.delete(id);
        if (state.socket) state.socket.emit("unsubscribe", { channel_id: id });
      }
    }
    for (const id of want) subscribe(id);
  }

  function connect() {
    const socket = io({ auth: { token: state.key } });
    state.socket = socket;
    fire("socket", socket); // before "connect", so others' handlers see the first one too
    setConn("connecting", "connecting…");
    socket.on("connect", async () => {
      setConn("live", "live");
      state.subscribed.clear();
      syncSubscriptions(); // with last_clip_id where we have one
      try {
        await loadRecent(); // merges; covers channels with nothing seen yet
      } catch (e) {
        if (e instanceof Unauthorized) return askKey(e.message);
        notice(`Could not load clips: ${e.message}`);
      }
    });
    socket.on("disconnect", () => {
      state.subscribed.clear();
      setConn("connecting", "reconnecting…");
    });
    socket.on("connect_error", (err) => {
      if (err && err.data && err.data.code === "unauthorized") {
        askKey("The API key was refused.");
      } else {
        setConn("offline", "offline — retrying");
      }
    });
    socket.on("clip", (clip) => addClip(clip, { fresh: true }));
  }

  async function start() {
    $("login").hidden = true;
    setConn("connecting", "loading…");
    try {
      await loadChannels();
      await loadScope();
    } catch (e) {
      if (e instanceof Unauthorized) return askKey("The API key was refused.");
      setConn("offline", "offline");
      notice(`Could not reach the server: ${e.message}`);
      setTimeout(start, 5000);
      return;
    }
    sessionStorage.setItem(KEY_STORE, state.key); // this tab only, gone when it closes
    $("main").hidden = false;
    $("picker").hidden = false;
    $("forget").hidden = false;
    $("tabs").hidden = false;
    notice("");
    fire("start");
    showView(); // after "start": a view shown fires "view" for a started page
    connect();
    state.refresh = setInterval(async () => {
      try {
        await loadChannels();
        syncSubscriptions();
      } catch (e) {
        if (e instanceof Unauthorized) askKey("The API key was refused.");
      }
    }, 10000);
  }

  // -- views ---------------------------------------------------------------------------
  function currentView() {
    const name = location.hash.replace(/^#/, "").split("/")[0];
    return VIEWS.includes(name) ? name : "live";
  }

  function showView() {
    const view = currentView();
    for (const name of VIEWS) {
      $(`${name}-view`).hidden = name !== view;
      const tab = $(`tab-${name}`);
      if (!tab) continue; // the clip page has no tab
      if (name === view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
      tab.classList.toggle("active", name === view);
    }
    $("picker").hidden = $("main").hidden || view !== "live";
    if (!$("main").hidden) fire("view", view);
  }

  // -- wiring --------------------------------------------------------------------------
  window.addEventListener("hashchange", showView);
  $("channel").addEventListener("change", async (ev) => {
    state.pick = ev.target.value;
    localStorage.setItem(PICK_STORE, state.pick);
    $("clips").replaceChildren();
    state.clips.clear();
    renderChannels();
    syncSubscriptions();
    try {
      await loadRecent();
    } catch (e) {
      notice(`Could not load clips: ${e.message}`);
    }
  });

  $("since").addEventListener("change", async () => {
    $("clips").replaceChildren();
    state.clips.clear();
    const q = $("search").value.trim();
    if (q) search(q);
    try {
      await loadRecent();
    } catch (e) {
      notice(`Could not load clips: ${e.message}`);
    }
  });

  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    search($("search").value.trim());
  });
  $("search").addEventListener("search", () => search($("search").value.trim())); // the clear button

  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = $("key").value.trim();
    if (state.key) start();
  });

  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    askKey("");
  });

  // What vods.js (and any later view) shares with this page. `on(hook, fn)`: "start" once the
  // key is accepted (its scope known: `allows(need)`), "socket" with each new Socket.IO client
  // (before it connects), "stop" when the page lets go of the key, "view" with the view's
  // name each time one is shown (after "start").
  window.livecut = {
    el,
    badge,
    setBadge,
    clock,
    media,
    api,
    notice,
    renderClip,
    Unauthorized,
    askKey,
    allows,
    channelName(id) {
      const c = state.channels.get(id);
      return c ? c.name : id;
    },
    get key() {
      return state.key;
    },
    get socket() {
      return state.socket;
    },
    on(hook, fn) {
      state.hooks[hook].push(fn);
    },
  };

  // The printed link carries the key in the fragment (#key=KEY, or #vods&key=KEY), which
  // browsers never send to a server; it is moved to session storage and off the address bar.
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromUrl = fragment.get("key");
  if (fromUrl) {
    fragment.delete("key");
    const view = [...fragment.keys()].find((name) => VIEWS.includes(name));
    history.replaceState(null, "", location.pathname + location.search + (view ? `#${view}` : ""));
  }
  localStorage.removeItem(KEY_STORE); // where earlier versions kept it
  state.key = fromUrl || sessionStorage.getItem(KEY_STORE) || "";
  // start once every script has loaded, so later ones (vods.js) have hung their hooks
  const begin = () => (state.key ? start() : askKey(""));
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", begin);
  else begin();
})();
