// livecut console, Settings view: clip retention (every key sees the limits and what they
// weigh on; an admin key changes them), and for admin keys webhooks (create, the secret shown
// once, ping, the delivery log, redeliver, delete) and API keys (create with a scope, revoke).
// Uses what feed.js shares on window.livecut.
(function () {
  "use strict";

  const L = window.livecut;
  const $ = (id) => document.getElementById(id);
  const el = L.el;

  const LOG_MS = 3000; // an opened delivery log is reloaded this often while the view is shown
  const LOG_LIMIT = 20;
  const GB = 1e9; // the size input's unit, as its label says (decimal, like a disk's size)

  const state = {
    shown: false,
    hooks: new Map(), // webhook id -> {hook, li}
    timer: null,
    channels: [],
  };

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "–";
  }

  function message(id, text, kind) {
    const m = $(id);
    m.textContent = text || "";
    m.classList.toggle("error", kind === "error");
  }

  function button(text, cls, testid, onClick) {
    const b = el("button", cls, text);
    b.type = "button";
    if (testid) b.dataset.testid = testid;
    b.addEventListener("click", onClick);
    return b;
  }

  function refused(e) {
    if (e instanceof L.Unauthorized) {
      L.askKey("The API key was refused.");
      return true;
    }
    return false;
  }

  // Each cell's column name, shown beside it where a phone stacks the table's cells.
  function labelCells(tr, names) {
    [...tr.children].forEach((td, i) => {
      if (names[i]) td.dataset.label = names[i];
    });
  }

  // A secret shown once, with a copy button and a note; `box` is its container.
  function showSecret(box, label, secret, testid) {
    const code = el("code", "copy-value", secret);
    code.dataset.testid = testid;
    const copy = button("Copy", "small secondary", null, async () => {
      try {
        await navigator.clipboard.writeText(secret);
        copy.textContent = "Copied";
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(code);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        copy.textContent = "Selected: press Ctrl+C";
      }
    });
    copy.setAttribute("aria-label", `Copy the ${label}`);
    const done = button("I have saved it", "small link", null, () => {
      box.replaceChildren();
      box.hidden = true;
    });
    const row = el("div", "copy-row");
    row.append(el("span", "copy-label", label), code, copy);
    box.replaceChildren(el("p", "", `This ${label} is shown now only: save it where your tool keeps secrets.`), row, done);
    box.hidden = false;
    copy.focus();
  }

  // -- webhooks ------------------------------------------------------------------------
  function renderHook(hook) {
    const li = el("li", "hook");
    li.dataset.id = hook.id;
    li.dataset.testid = "webhook";
    const head = el("div", "hook-head");
    head.append(el("span", "badge"), el("code", "hook-url"), el("span", "hook-events muted"));
    const actions = el("div", "hook-actions");
    actions.append(
      button("Send a test event", "small secondary", "webhook-ping", () => ping(hook.id)),
      button("Enable again", "small secondary", "webhook-enable", () => enableHook(hook.id)),
      button("Delete", "small danger", "webhook-delete", () => removeHook(hook.id)),
    );
    head.append(actions);
    const note = el("p", "hook-note muted");
    const log = el("details", "hook-log");
    log.append(el("summary", "", "Delivery log"));
    const table = el("table", "deliveries");
    const caption = el("caption", "sr-only", "Deliveries, newest first");
    const thead = el("thead");
    const tr = el("tr");
    for (const h of ["Event", "Status", "Attempts", "Last answer", "Created", ""]) {
      const th = el("th", "", h);
      th.scope = "col";
      if (!h) th.append(el("span", "sr-only", "Action"));
      tr.append(th);
    }
    thead.append(tr);
    table.append(caption, thead, el("tbody"));
    log.append(table, el("p", "log-empty muted", "Nothing sent yet."));
    log.addEventListener("toggle", () => {
      if (log.open) loadLog(hook.id);
    });
    li.append(head, note, log);
    return li;
  }

  function fillHook(entry) {
    const { hook, li } = entry;
    const [kind, text] = hook.enabled ? (hook.failing_since ? ["waiting", "failing"] : ["live", "enabled"]) : ["error", "disabled"];
    L.setBadge(li.querySelector(".badge"), kind, text);
    li.querySelector(".hook-url").textContent = hook.url;
    const scope = hook.channel_id ? ` · channel ${hook.channel_id}` : "";
    li.querySelector(".hook-events").textContent = `${hook.events.join(", ")} · ${hook.format}${scope}`;
    const note = li.querySelector(".hook-note");
    note.textContent = !hook.enabled
      ? `Disabled: ${hook.disabled_reason}. Enable it again once the receiver is fixed; what it missed can be redelivered from its log.`
      : hook.failing_since ? `Failing since ${when(hook.failing_since)}; retried with backoff.` : "";
    note.hidden = !note.textContent;
    li.querySelector("[data-testid=webhook-ping]").disabled = !hook.enabled;
    li.querySelector("[data-testid=webhook-enable]").hidden = hook.enabled;
  }

  function placeHook(hook) {
    let entry = state.hooks.get(hook.id);
    if (!entry) {
      entry = { hook, li: renderHook(hook) };
      state.hooks.set(hook.id, entry);
      $("webhook-list").append(entry.li);
    }
    entry.hook = hook;
    fillHook(entry);
    $("webhooks-empty").hidden = state.hooks.size > 0;
    return entry;
  }

  async function loadHooks() {
    try {
      const { items } = await L.api("/api/webhooks");
      const ids = new Set(items.map((h) => h.id));
      for (const [id, entry] of state.hooks) {
        if (!ids.has(id)) {
          entry.li.remove();
          state.hooks.delete(id);
        }
      }
      for (const hook of items) placeHook(hook);
      $("webhooks-empty").hidden = state.hooks.size > 0;
    } catch (e) {
      if (!refused(e)) message("webhook-msg", `Could not load webhooks: ${e.message}`, "error");
    }
  }

  async function loadLog(id) {
    const entry = state.hooks.get(id);
    if (!entry) return;
    const body = entry.li.querySelector(".deliveries tbody");
    try {
      const { items } = await L.api(`/api/webhooks/${encodeURIComponent(id)}/deliveries?limit=${LOG_LIMIT}`);
      body.replaceChildren();
      for (const d of items) {
        const tr = el("tr");
        tr.dataset.testid = "webhook-delivery";
        tr.dataset.status = d.status;
        const last = d.attempts[d.attempts.length - 1];
        const answer = last ? (last.status_code ? `HTTP ${last.status_code}` : last.error || "no answer") : "–";
        const status = el("td");
        status.append(L.badge(d.status === "delivered" ? "done" : d.status, d.status));
        const action = el("td");
        action.append(button("Redeliver", "small secondary", "webhook-redeliver", () => redeliver(id, d.id)));
        const type = el("td");
        type.append(el("span", "", d.type), el("code", "muted event-id", d.event_id));
        tr.append(type, status, el("td", "num", String(d.attempts.length)), el("td", "", answer),
          el("td", "", when(d.created_at)), action);
        labelCells(tr, ["Event", "Status", "Attempts", "Last answer", "Created", ""]);
        body.append(tr);
      }
      entry.li.querySelector(".log-empty").hidden = items.length > 0;
    } catch (e) {
      if (!refused(e)) body.replaceChildren(el("tr", "error", `Could not load the log: ${e.message}`));
    }
  }

  async function createHook(ev) {
    ev.preventDefault();
    message("webhook-msg", "");
    const url = $("webhook-url").value.trim();
    const events = [...document.querySelectorAll("#webhook-form input[name=event]:checked")].map((i) => i.value);
    const body = { url, events, format: $("webhook-format").value };
    const channel = $("webhook-channel").value;
    if (channel) body.channel_id = channel;
    const err = $("webhook-url-error");
    err.hidden = true;
    $("webhook-url").removeAttribute("aria-invalid");
    try {
      const hook = await L.api("/api/webhooks", { method: "POST", body: JSON.stringify(body) });
      $("webhook-form").reset();
      placeHook(hook);
      showSecret($("webhook-secret-box"), "signing secret", hook.secret, "webhook-secret");
      message("webhook-msg", "Webhook created.");
    } catch (e) {
      if (refused(e)) return;
      if (/^url|`\$\.url`/.test(e.message)) {
        err.textContent = e.message;
        err.hidden = false;
        $("webhook-url").setAttribute("aria-invalid", "true");
        $("webhook-url").focus();
      }
      message("webhook-msg", `Not created: ${e.message}`, "error");
    }
  }

  async function ping(id) {
    try {
      await L.api(`/api/webhooks/${encodeURIComponent(id)}/ping`, { method: "POST" });
      const log = state.hooks.get(id).li.querySelector(".hook-log");
      log.open = true; // the toggle event loads it
      loadLog(id);
    } catch (e) {
      if (!refused(e)) message("webhook-msg", `Could not ping: ${e.message}`, "error");
    }
  }

  async function enableHook(id) {
    try {
      placeHook(await L.api(`/api/webhooks/${encodeURIComponent(id)}/enable`, { method: "POST" }));
      message("webhook-msg", "Enabled: new events are sent again.", "ok");
    } catch (e) {
      if (!refused(e)) message("webhook-msg", `Could not enable: ${e.message}`, "error");
    }
  }

  async function redeliver(id, deliveryId) {
    try {
      await L.api(`/api/webhooks/${encodeURIComponent(id)}/deliveries/${deliveryId}/redeliver`, { method: "POST" });
      loadLog(id);
    } catch (e) {
      if (!refused(e)) message("webhook-msg", `Could not redeliver: ${e.message}`, "error");
    }
  }

  async function removeHook(id) {
    const entry = state.hooks.get(id);
    if (!entry || !window.confirm(`Delete the webhook to ${entry.hook.url}? Its undelivered events and its log go with it.`)) return;
    try {
      await L.api(`/api/webhooks/${encodeURIComponent(id)}`, { method: "DELETE" });
      entry.li.remove();
      state.hooks.delete(id);
      $("webhooks-empty").hidden = state.hooks.size > 0;
    } catch (e) {
      if (!refused(e)) message("webhook-msg", `Could not delete: ${e.message}`, "error");
    }
  }

  async function loadChannelChoices() {
    try {
      const { items } = await L.api("/api/channels");
      const select = $("webhook-channel");
      const current = select.value;
      select.replaceChildren(new Option("Every channel and VOD job", ""));
      for (const c of items) select.append(new Option(c.name, c.id));
      select.value = items.some((c) => c.id === current) ? current : "";
    } catch (e) {
      refused(e);
    }
  }

  // -- API keys --------------------------------------------------------------------------
  async function loadKeys() {
    try {
      const { items } = await L.api("/api/keys");
      const body = $("key-rows");
      body.replaceChildren();
      for (const k of items) {
        const tr = el("tr");
        tr.dataset.id = k.id;
        tr.dataset.testid = "api-key";
        const name = el("td");
        name.append(el("span", "", k.name || "(no name)"), el("code", "muted event-id", k.id));
        const status = el("td");
        status.append(k.revoked_at ? L.badge("error", "revoked") : L.badge("live", "active"));
        const action = el("td");
        if (!k.revoked_at) {
          const revoke = button("Revoke", "small danger", "key-revoke", () => revokeKey(k));
          revoke.setAttribute("aria-label", `Revoke ${k.name || k.id}`);
          action.append(revoke);
        }
        tr.append(name, el("td", "", k.scope), status, el("td", "", when(k.created_at)), el("td", "", when(k.last_used_at)), action);
        labelCells(tr, ["Name", "Scope", "Status", "Created", "Last used", ""]);
        body.append(tr);
      }
      $("keys-empty").hidden = items.length > 0;
    } catch (e) {
      if (!refused(e)) message("apikey-msg", `Could not load keys: ${e.message}`, "error");
    }
  }

  async function createKey(ev) {
    ev.preventDefault();
    message("apikey-msg", "");
    const body = { scope: $("apikey-scope").value, name: $("apikey-name").value.trim() };
    try {
      const made = await L.api("/api/keys", { method: "POST", body: JSON.stringify(body) });
      $("apikey-form").reset();
      showSecret($("apikey-secret-box"), "API key", made.key, "new-key-secret");
      message("apikey-msg", `Created a ${made.scope} key.`);
      loadKeys();
    } catch (e) {
      if (!refused(e)) message("apikey-msg", `Not created: ${e.message}`, "error");
    }
  }

  async function revokeKey(k) {
    if (!window.confirm(`Revoke the ${k.scope} key “${k.name || k.id}”? Whatever uses it is refused from now on.`)) return;
    try {
      await L.api(`/api/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
      message("apikey-msg", `Revoked “${k.name || k.id}”.`);
      loadKeys();
    } catch (e) {
      if (!refused(e)) message("apikey-msg", `Could not revoke: ${e.message}`, "error");
    }
  }

  // -- retention ---------------------------------------------------------------------------
  // Decimal units, as the size input takes them.
  function size(n) {
    if (n >= GB) return `${(n / GB).toFixed(2)} GB`;
    return `${(n / 1e6).toFixed(1)} MB`;
  }

  function limitsText(days, bytes) {
    const parts = [];
    if (days) parts.push(`clips older than ${days} days`);
    if (bytes) parts.push(`the oldest clips while all take more than ${size(bytes)}`);
    return parts.length ? `Deleted now: ${parts.join("; and ")}.` : "No limits now: every clip is kept, unless its channel has limits of its own.";
  }

  function fieldError(field, text) {
    const err = $(`${field}-error`);
    err.textContent = text || "";
    err.hidden = !text;
    if (text) $(field).setAttribute("aria-invalid", "true");
    else $(field).removeAttribute("aria-invalid");
  }

  function showRetention(view, fill) {
    const { limits, usage, channels } = view;
    $("retention-usage").textContent = `${usage.clips} clip${usage.clips === 1 ? "" : "s"}, ${size(usage.bytes)} (a new clip counts once measured, within a minute).`;
    $("retention-now").textContent = limitsText(limits.max_age_days, limits.max_bytes);
    if (fill) {
      // 0 shows as empty: the placeholder says what that means
      $("retention-days").value = limits.max_age_days || "";
      $("retention-gb").value = limits.max_bytes ? limits.max_bytes / GB : "";
    }
    const rows = $("retention-channel-rows");
    rows.replaceChildren();
    for (const c of channels) {
      const tr = el("tr");
      tr.dataset.testid = "retention-channel";
      tr.append(
        el("td", "", c.name),
        el("td", "", c.limits.max_age_days ? `${c.limits.max_age_days} days` : "–"),
        el("td", "", c.limits.max_bytes ? size(c.limits.max_bytes) : "–"),
      );
      rows.append(tr);
    }
    $("retention-channels").hidden = channels.length === 0;
  }

  async function loadRetention(fill) {
    try {
      showRetention(await L.api("/api/settings/retention"), fill);
    } catch (e) {
      if (!refused(e)) $("retention-usage").textContent = `Could not load the retention settings: ${e.message}`;
    }
  }

  // An input's number; empty is 0 (no limit). NaN where the browser holds text it cannot read.
  function numberIn(input) {
    if (input.validity.badInput) return NaN;
    return input.value.trim() === "" ? 0 : Number(input.value);
  }

  async function saveRetention(ev) {
    ev.preventDefault();
    message("retention-msg", "");
    fieldError("retention-days", "");
    fieldError("retention-gb", "");
    const days = numberIn($("retention-days"));
    const gb = numberIn($("retention-gb"));
    if (Number.isNaN(days)) fieldError("retention-days", "Not a number.");
    if (Number.isNaN(gb)) fieldError("retention-gb", "Not a number.");
    if (Number.isNaN(days) || Number.isNaN(gb)) return;
    const body = { max_age_days: days, max_bytes: Math.round(gb * GB) };
    try {
      showRetention(await L.api("/api/settings/retention", { method: "PUT", body: JSON.stringify(body) }), true);
      message("retention-msg", "Saved: the next sweep, within a minute, applies it.");
    } catch (e) {
      if (refused(e)) return;
      // the API names the field: "... - at `$.max_bytes`"
      const field = /\$\.max_age_days/.test(e.message) ? "retention-days" : /\$\.max_bytes/.test(e.message) ? "retention-gb" : null;
      if (field) {
        fieldError(field, e.message);
        $(field).focus();
      }
      message("retention-msg", `Not saved: ${e.message}`, "error");
    }
  }

  // -- wiring ----------------------------------------------------------------------------
  function refreshLogs() {
    for (const [id, entry] of state.hooks) if (entry.li.querySelector(".hook-log").open) loadLog(id);
  }

  function enter() {
    if (!L.key) return;
    loadRetention(true);
    if (!L.allows("admin")) return;
    loadHooks();
    loadKeys();
    loadChannelChoices();
    clearInterval(state.timer);
    state.timer = setInterval(refreshLogs, LOG_MS);
  }

  L.on("view", (view) => {
    state.shown = view === "settings";
    if (state.shown) enter();
    else clearInterval(state.timer);
  });
  L.on("start", () => {
    if (state.shown) enter();
  });
  L.on("stop", () => {
    clearInterval(state.timer);
    for (const entry of state.hooks.values()) entry.li.remove();
    state.hooks.clear();
    $("key-rows").replaceChildren();
    $("retention-form").reset();
    for (const id of ["retention-usage", "retention-now", "retention-msg"]) $(id).textContent = "";
    for (const id of ["webhook-secret-box", "apikey-secret-box"]) {
      $(id).replaceChildren();
      $(id).hidden = true;
    }
  });

  $("webhook-form").addEventListener("submit", createHook);
  $("apikey-form").addEventListener("submit", createKey);
  $("retention-form").addEventListener("submit", saveRetention);
})();
