// livecut VOD view: submit recordings (URLs and uploaded files) as one batch, then follow each
// job and its clips live. Uploads go over tus (vendor/tus.min.js) and resume after a reload
// when the same file is chosen again. Uses what feed.js shares on window.livecut.
(function () {
  "use strict";

  const L = window.livecut;
  const $ = (id) => document.getElementById(id);
  const el = L.el;

  const ENDPOINT = new URL("/api/uploads", location.href).href;
  const CHUNK = chunkSize(); // bytes per PATCH: what a reload can lose at most
  const TERMINAL = new Set(["done", "failed", "cancelled"]);
  const LIST_LIMIT = 50; // jobs listed on load
  const CLIP_PAGES = 5; // of 200 clips, per job on load
  const REFRESH_MS = 30000; // jobs submitted elsewhere (the CLI, another tab) show up this often

  const state = {
    uploads: [], // {file, upload, state: uploading|done|error, id, row, resumedAt}
    urls: null, // the URLs of the batch being submitted (set while waiting for uploads)
    submitting: false,
    sending: false,
    jobs: new Map(), // job id -> {job, li, clips: Map(clip id -> <li>), lastClip, loaded}
    subscribed: new Set(), // job ids subscribed on the current socket
    refresh: null,
  };

  // ?tus_chunk=BYTES overrides the default of 8 MiB (tests use small chunks to slow uploads)
  function chunkSize() {
    const asked = Number.parseInt(new URLSearchParams(location.search).get("tus_chunk") || "", 10);
    return Number.isFinite(asked) && asked >= 1024 ? asked : 8 * 1024 * 1024;
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    const units = ["KB", "MB", "GB", "TB"];
    let v = n / 1024;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  function percent(fraction) {
    return `${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  }

  function message(text, kind) {
    const m = $("vod-msg");
    m.textContent = text || "";
    m.classList.toggle("error", kind === "error");
  }

  // -- uploads -------------------------------------------------------------------------
  function uploadError(err) {
    const res = err && err.originalResponse;
    if (res) {
      try {
        const body = JSON.parse(res.getBody());
        if (body && body.error) return `${body.error.code}: ${body.error.message}`;
      } catch (_) {
        // not our JSON: fall through
      }
      return `HTTP ${res.getStatus()}`;
    }
    return (err && err.message) || "the upload failed";
  }

  function retryable(err) {
    const status = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
    // network errors and 5xx are worth retrying, 409/423 (offset mismatch, locked) too
    return !(status >= 400 && status < 500) || status === 409 || status === 423;
  }

  function renderUpload(entry) {
    const li = el("li", "upload");
    li.append(
      el("span", "up-name", entry.file.name),
      el("span", "up-size", bytes(entry.file.size)),
    );
    const bar = el("progress", "up-bar");
    bar.max = 1;
    bar.value = 0;
    const action = el("button", "link up-action", "Remove");
    action.type = "button";
    action.addEventListener("click", () => (entry.state === "error" ? retryUpload(entry) : removeUpload(entry)));
    const remove = el("button", "link up-remove", "Remove");
    remove.type = "button";
    remove.hidden = true;
    remove.addEventListener("click", () => removeUpload(entry));
    li.append(bar, el("span", "up-pct", "0%"), el("span", "up-note"), action, remove);
    return li;
  }

  function showUpload(entry, { sent, note } = {}) {
    const li = entry.row;
    li.dataset.state = entry.state;
    if (sent !== undefined) {
      const fraction = entry.file.size ? sent / entry.file.size : 1;
      li.querySelector(".up-bar").value = fraction;
      li.querySelector(".up-pct").textContent = percent(fraction);
    }
    if (note !== undefined) li.querySelector(".up-note").textContent = note;
    const failed = entry.state === "error";
    li.querySelector(".up-action").textContent = failed ? "Retry" : "Remove";
    li.querySelector(".up-remove").hidden = !failed;
    li.querySelector(".up-note").classList.toggle("error", failed);
  }

  function sameFile(a, b) {
    return a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;
  }

  function addFiles(files) {
    if (!window.tus || !tus.isSupported) {
      message("This browser cannot upload files here; paste URLs instead.", "error");
      return;
    }
    for (const file of files) {
      if (state.uploads.some((e) => sameFile(e.file, file))) continue;
      const entry = { file, upload: null, state: "uploading", id: null, row: null, resumedAt: null };
      entry.row = renderUpload(entry);
      state.uploads.push(entry);
      $("vod-uploads").append(entry.row);
      showUpload(entry, { sent: 0, note: "starting…" });
      startUpload(entry);
    }
    updateForm();
  }

  async function startUpload(entry) {
    const { file } = entry;
    const upload = new tus.Upload(file, {
      endpoint: ENDPOINT,
      chunkSize: CHUNK,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      headers: { Authorization: `Bearer ${L.key}` }, // never in the URL
      metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
      removeFingerprintOnSuccess: true, // kept until then: the resume point after a reload
      onShouldRetry: (err) => retryable(err),
      onAfterResponse: (req, res) => {
        // the HEAD of a resumed upload: where the server has it
        if (entry.resumedAt === null && req.getMethod() === "HEAD" && res.getStatus() < 300) {
          const offset = Number.parseInt(res.getHeader("Upload-Offset") || "", 10);
          if (Number.isFinite(offset)) {
            entry.resumedAt = offset;
            showUpload(entry, { sent: offset, note: `resumed at ${percent(offset / (file.size || 1))}` });
          }
        }
      },
      onUploadUrlAvailable: () => renderInterrupted(),
      onProgress: (sent) => {
        if (entry.state !== "uploading") return;
        showUpload(entry, { sent, note: entry.resumedAt !== null ? undefined : "uploading" });
      },
      onSuccess: () => {
        entry.id = upload.url.replace(/\/+$/, "").split("/").pop();
        entry.state = "done";
        const resumed = entry.resumedAt ? ` (resumed at ${percent(entry.resumedAt / (file.size || 1))})` : "";
        showUpload(entry, { sent: file.size, note: `uploaded${resumed}` });
        renderInterrupted();
        maybeSend();
      },
      onError: (err) => {
        if (!state.uploads.includes(entry)) return; // removed meanwhile
        entry.state = "error";
        showUpload(entry, { note: uploadError(err) });
        maybeSend();
      },
    });
    entry.upload = upload;
    try {
      const previous = await upload.findPreviousUploads();
      if (previous.length) {
        previous.sort((a, b) => String(b.creationTime).localeCompare(String(a.creationTime)));
        upload.resumeFromPreviousUpload(previous[0]);
        showUpload(entry, { note: "resuming…" });
      }
    } catch (e) {
      console.warn("tus: could not look up earlier uploads", e);
    }
    if (state.uploads.includes(entry)) upload.start();
  }

  function retryUpload(entry) {
    entry.state = "uploading";
    showUpload(entry, { note: "retrying…" });
    entry.upload.start();
    updateForm();
  }

  function removeUpload(entry) {
    state.uploads = state.uploads.filter((e) => e !== entry);
    entry.row.remove();
    // terminate: an unfinished upload would wait for expiry, a finished one forever
    if (entry.upload) entry.upload.abort(true).catch(() => {}).then(renderInterrupted);
    updateForm();
    maybeSend();
  }

  // Uploads this browser started earlier (another visit) and never finished: choosing the
  // same file again resumes them. tus-js-client keeps them in localStorage.
  async function renderInterrupted() {
    const list = $("vod-interrupted");
    const storage = window.tus && tus.defaultOptions && tus.defaultOptions.urlStorage;
    let found = [];
    try {
      if (storage && storage.findAllUploads) found = await storage.findAllUploads();
    } catch (_) {
      found = [];
    }
    const active = new Set(state.uploads.map((e) => e.upload && e.upload.url).filter(Boolean));
    // the fingerprint in each key ends with the endpoint: only this server's uploads
    found = found.filter(
      (u) => typeof u.urlStorageKey === "string" && u.urlStorageKey.includes(ENDPOINT) && !active.has(u.uploadUrl),
    );
    list.replaceChildren();
    for (const u of found) {
      const name = (u.metadata && u.metadata.filename) || "a file";
      const li = el("li", "interrupted-item");
      li.append(
        el("span", "", "Unfinished upload: "),
        el("strong", "", name),
        el("span", "muted", ` (${bytes(u.size || 0)}) — choose the same file again to resume it.`),
      );
      const discard = el("button", "link", "Discard");
      discard.type = "button";
      discard.addEventListener("click", async () => {
        try {
          await tus.Upload.terminate(u.uploadUrl, { headers: { Authorization: `Bearer ${L.key}` } });
        } catch (_) {
          // gone already (expired): forgetting it is all that is left
        }
        await storage.removeUpload(u.urlStorageKey);
        renderInterrupted();
      });
      li.append(discard);
      list.append(li);
    }
    list.hidden = found.length === 0;
  }

  // -- submitting ----------------------------------------------------------------------
  function pastedUrls() {
    return $("vod-urls")
      .value.split(/\r?\n/)
      .map((line) => line.trim())
      .filter(Boolean);
  }

  function updateForm() {
    const waiting = state.uploads.filter((e) => e.state !== "done").length;
    const button = $("vod-submit");
    button.disabled = state.submitting;
    $("vod-urls").readOnly = state.submitting;
    button.textContent = state.sending ? "Submitting…" : state.submitting && waiting ? "Waiting for uploads…" : "Submit";
  }

  function submit(ev) {
    ev.preventDefault();
    if (state.submitting) return;
    const urls = pastedUrls();
    if (!urls.length && !state.uploads.length) {
      message("Paste a recording URL or choose a file first.", "error");
      return;
    }
    state.urls = urls;
    state.submitting = true;
    updateForm();
    maybeSend();
  }

  // Sends the batch once every upload is done (called on submit and as uploads finish).
  async function maybeSend() {
    if (!state.submitting || state.sending) return;
    if (state.uploads.some((e) => e.state === "error")) {
      state.submitting = false;
      updateForm();
      message("An upload failed: retry or remove it, then submit again.", "error");
      return;
    }
    const waiting = state.uploads.filter((e) => e.state !== "done").length;
    if (waiting) {
      message(`Submitting once ${waiting === 1 ? "the upload finishes" : `${waiting} uploads finish`}…`);
      updateForm();
      return;
    }
    if (!state.urls.length && !state.uploads.length) {
      state.submitting = false; // everything was removed while waiting
      updateForm();
      message("");
      return;
    }
    const sent = [...state.uploads];
    const items = [
      ...state.urls.map((url) => ({ url })),
      ...sent.map((e) => ({ upload_id: e.id, name: e.file.name })),
    ];
    state.sending = true;
    updateForm();
    message("");
    try {
      const { items: jobs } = await L.api("/api/vods", { method: "POST", body: JSON.stringify({ items }) });
      $("vod-urls").value = "";
      for (const e of sent) e.row.remove();
      state.uploads = state.uploads.filter((e) => !sent.includes(e));
      for (const job of jobs) placeJob(job, true);
      for (const job of jobs) follow(job.id);
      message(`Submitted ${jobs.length} recording${jobs.length === 1 ? "" : "s"}.`);
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      message(`Not submitted: ${e.message}`, "error");
    } finally {
      state.sending = false;
      state.submitting = false;
      state.urls = null;
      updateForm();
    }
  }

  // -- jobs ----------------------------------------------------------------------------
  function renderJob(job) {
    const li = el("li", "job");
    li.dataset.id = job.id;
    li.dataset.testid = "vod-job";
    const head = el("div", "job-head");
    const cancel = el("button", "cancel", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => cancelJob(job.id, cancel));
    head.append(el("span", "badge"), el("span", "job-name"), el("span", "job-count"), cancel);
    const bar = el("div", "job-progress");
    const progress = el("progress", "job-bar");
    progress.max = 1;
    bar.append(progress, el("span", "job-pct"), el("span", "job-info"));
    li.append(head, bar, el("p", "job-error error"), el("ol", "clips job-clips"));
    return li;
  }

  function showJob(entry) {
    const { job, li } = entry;
    li.dataset.status = job.status;
    L.setBadge(li.querySelector(".badge"), job.status);
    li.querySelector(".job-name").textContent = job.name;
    li.querySelector(".job-name").title = job.source;
    const count = Math.max(job.clips || 0, entry.clips.size);
    li.querySelector(".job-count").textContent = `${count} clip${count === 1 ? "" : "s"}`;
    li.querySelector(".cancel").hidden = TERMINAL.has(job.status) || !L.allows("ingest");
    li.querySelector(".job-bar").value = job.progress || 0;
    li.querySelector(".job-pct").textContent = percent(job.progress || 0);
    const info = [];
    if (job.duration) info.push(`${L.clock(job.duration)} long`);
    if (job.status === "queued") info.push("waiting for a slot");
    li.querySelector(".job-info").textContent = info.join(" · ");
    const error = li.querySelector(".job-error");
    error.textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
    error.hidden = !job.error;
  }

  // Whether `next` is older news than `current`: a job only moves forward (queued, running,
  // then final), and its progress never goes back. A snapshot read before a change (the REST
  // list, the server's "vod" right after a subscribe) can arrive after the change's event.
  function stale(current, next) {
    const rank = (job) => (TERMINAL.has(job.status) ? 2 : job.status === "running" ? 1 : 0);
    if (rank(next) !== rank(current)) return rank(next) < rank(current);
    return rank(next) < 2 && (next.progress || 0) < (current.progress || 0);
  }

  // A job from the API or an event: update it, or (`add`) put it at the top, newest first.
  function placeJob(job, add) {
    let entry = state.jobs.get(job.id);
    if (entry) {
      if (stale(entry.job, job)) return entry;
      const wasDone = TERMINAL.has(entry.job.status);
      entry.job = job;
      showJob(entry);
      if (!wasDone && TERMINAL.has(job.status)) loadClips(job.id); // anything the stream held back
      return entry;
    }
    if (!add) return null; // an event for a job not listed here
    entry = { job, li: renderJob(job), clips: new Map(), lastClip: "", loaded: false };
    state.jobs.set(job.id, entry);
    showJob(entry);
    $("vod-jobs").prepend(entry.li);
    $("vod-empty").hidden = true;
    return entry;
  }

  async function cancelJob(id, button) {
    button.disabled = true;
    try {
      placeJob(await L.api(`/api/vods/${encodeURIComponent(id)}`, { method: "DELETE" }), true);
    } catch (e) {
      if (e instanceof L.Unauthorized) return L.askKey("The API key was refused.");
      L.notice(`Could not cancel: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  async function loadJobs() {
    let items;
    try {
      ({ items } = await L.api(`/api/vods?limit=${LIST_LIMIT}`));
    } catch (e) {
      if (e instanceof L.Unauthorized) return;
      L.notice(`Could not load VOD jobs: ${e.message}`);
      return;
    }
    // newest first: unknown ones go on top, oldest of them first
    for (const job of [...items].reverse()) {
      const known = state.jobs.get(job.id);
      // a followed job's events are fresher than this list
      if (known && state.subscribed.has(job.id)) continue;
      placeJob(job, true);
    }
    $("vod-empty").hidden = state.jobs.size > 0;
    for (const job of items) {
      const entry = state.jobs.get(job.id);
      if (!TERMINAL.has(entry.job.status)) follow(job.id);
      else if (!entry.loaded) loadClips(job.id);
    }
  }

  // -- clips ---------------------------------------------------------------------------
  function addClip(clip, fresh) {
    const entry = state.jobs.get(clip.vod_id);
    if (!entry) return;
    if (clip.id > entry.lastClip) entry.lastClip = clip.id;
    if (entry.clips.has(clip.id)) return;
    const li = L.renderClip(clip, { label: entry.job.name });
    li.dataset.start = String(clip.stream_start);
    if (fresh) li.classList.add("fresh");
    // in recording order
    const list = entry.li.querySelector(".job-clips");
    let before = null;
    for (const other of list.children) {
      if (Number(other.dataset.start) > clip.stream_start) {
        before = other;
        break;
      }
    }
    list.insertBefore(li, before);
    entry.clips.set(clip.id, li);
    showJob(entry);
  }

  async function loadClips(id) {
    const entry = state.jobs.get(id);
    if (!entry) return;
    entry.loaded = true;
    let before = null;
    try {
      for (let page = 0; page < CLIP_PAGES; page++) {
        const query = new URLSearchParams({ vod_id: id, limit: "200" });
        if (before) query.set("before", before);
        const { items, next } = await L.api(`/api/clips?${query}`);
        for (const clip of items) addClip(clip, false);
        if (!next) break;
        before = next;
      }
    } catch (e) {
      entry.loaded = false;
      if (!(e instanceof L.Unauthorized)) L.notice(`Could not load clips of ${entry.job.name}: ${e.message}`);
    }
  }

  // -- live ----------------------------------------------------------------------------
  function follow(id) {
    const socket = L.socket;
    const entry = state.jobs.get(id);
    if (!entry || !socket || !socket.connected || state.subscribed.has(id)) return;
    state.subscribed.add(id);
    const msg = { vod_id: id };
    if (entry.lastClip) msg.last_clip_id = entry.lastClip; // the server sends what we missed
    socket.emit("subscribe", msg, (ack) => {
      if (ack && ack.ok) {
        // the stream covers what comes after the subscribe; the REST list what came before
        if (!entry.lastClip) loadClips(id);
        return;
      }
      state.subscribed.delete(id);
      const err = (ack && ack.error) || { code: "error", message: "no answer" };
      if (err.code === "not_found") return;
      setTimeout(() => follow(id), 3000);
    });
  }

  L.on("socket", (socket) => {
    socket.on("connect", () => {
      state.subscribed.clear();
      loadJobs(); // merges what changed while away, and (re)subscribes the active jobs
    });
    socket.on("disconnect", () => state.subscribed.clear());
    socket.on("vod", (job) => placeJob(job, false));
    socket.on("clip", (clip) => {
      if (clip.vod_id) addClip(clip, true);
    });
  });

  L.on("start", () => {
    renderInterrupted();
    loadJobs();
    clearInterval(state.refresh);
    state.refresh = setInterval(loadJobs, REFRESH_MS);
  });

  L.on("stop", () => {
    clearInterval(state.refresh);
    for (const e of state.uploads) if (e.upload) e.upload.abort(false); // resumable later
    state.uploads = [];
    state.jobs.clear();
    state.subscribed.clear();
    state.submitting = state.sending = false;
    $("vod-uploads").replaceChildren();
    $("vod-jobs").replaceChildren();
    message("");
    updateForm();
  });

  // -- wiring --------------------------------------------------------------------------
  $("vod-form").addEventListener("submit", submit);
  $("vod-files").addEventListener("change", (ev) => {
    addFiles([...ev.target.files]);
    ev.target.value = ""; // so choosing the same file again fires "change" again
  });
  const drop = $("vod-drop");
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    addFiles([...ev.dataTransfer.files]);
  });
})();
