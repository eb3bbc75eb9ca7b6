// The panel's behaviour: charts, queue editing, worker trigger, token cookie, live logs.
// No inline scripts anywhere (the CSP forbids them); everything hangs off data-* attributes.
// Every change is sent as JSON by fetch from the panel's own origin: the server refuses
// other bodies (but the package page's form with its CSRF token) and other origins.
"use strict";

function $(sel, root) { return (root || document).querySelector(sel); }
function $all(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

async function api(method, url, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(url, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    let detail = data && data.detail !== undefined ? data.detail : resp.statusText;
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    throw new Error(resp.status + ": " + detail);
  }
  return data;
}

function say(el, text, ok) {
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("error", ok === false);
}

function renderCharts() {
  if (typeof Plotly === "undefined") return;
  for (const el of $all(".chart[data-figure]")) {
    const fig = JSON.parse(el.dataset.figure);
    // no toolbar: it sat over the charts' titles, and the panel's charts need no zooming
    Plotly.newPlot(el, fig.data, fig.layout, { responsive: true, displayModeBar: false })
      .then(() => { el.dataset.rendered = "1"; });
  }
}

function wireJump() {
  const form = $("[data-jump]");
  if (!form) return;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = form.elements.name.value.trim();
    if (name) window.location.href = "/package/" + encodeURIComponent(name);
  });
}

function wireToken() {
  const form = $("[data-token-form]");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("[data-token-msg]");
    // the token goes in a header, never into a URL that proxies and histories keep
    const resp = await fetch("/api/session/token", {
      method: "POST", credentials: "same-origin",
      headers: { "X-Worker-Token": form.elements.token.value },
    });
    if (resp.ok) window.location.reload();
    else say(msg, resp.status === 403 ? "wrong token" : "token refused", false);
  });
}

function wireTrigger() {
  for (const button of $all("[data-trigger-worker]")) {
    button.addEventListener("click", async () => {
      const msg = button.parentElement.querySelector("[data-worker-msg]");
      button.disabled = true;
      try {
        const res = await api("POST", "/api/worker/trigger");
        say(msg, "worker " + (res.status || "started") + " (" + res.mode + ")", true);
      } catch (e) {
        say(msg, e.message, false);
      } finally {
        button.disabled = false;
      }
    });
  }
}

function wireRetry() {
  const form = $("[data-retry-form]");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("[data-retry-msg]", form);
    const field = (name) => form.elements[name].value;
    try {
      const req = await api("POST", form.getAttribute("action"), {
        version: field("version").trim(),
        python_tag: field("python_tag").trim(),
        platform_tag: field("platform_tag").trim(),
        recipe_steps_text: field("recipe_steps_text"),
        system_packages_text: field("system_packages_text"),
        note: field("note"),
        use_hints: false,  // the form shows the suggestion already, as edited
      });
      window.location.href = "/queue#req-" + encodeURIComponent(req.id);
    } catch (e) {
      say(msg, e.message, false);
    }
  });
}

function wireDead() {
  for (const li of $all("[data-dead-id]")) {
    const id = li.dataset.deadId;
    const msg = $("[data-msg]", li);
    $("[data-dead-requeue]", li).addEventListener("click", async () => {
      try {
        const req = await api("POST", "/api/queue/dead/" + id + "/requeue");
        window.location.href = "/queue#req-" + encodeURIComponent(req.id);
        window.location.reload();
      } catch (e) { say(msg, e.message, false); }
    });
    $("[data-dead-delete]", li).addEventListener("click", async () => {
      try {
        await api("DELETE", "/api/queue/dead/" + id);
        li.remove();
      } catch (e) { say(msg, e.message, false); }
    });
  }
}

function queueIds() {
  return $all("[data-request-id]").map((li) => li.dataset.requestId);
}

function wireQueue() {
  for (const li of $all("[data-request-id]")) {
    const id = li.dataset.requestId;
    const form = $("[data-edit-form]", li);
    const msg = $("[data-msg]", li);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("PUT", "/api/queue/" + id, {
          recipe_steps_text: form.elements.recipe_steps_text.value,
          system_packages_text: form.elements.system_packages_text.value,
          version: form.elements.version.value.trim(),
        });
        li.dataset.saved = "1";
        say(msg, "saved", true);
      } catch (e) {
        li.dataset.saved = "0";
        say(msg, e.message, false);
      }
    });
    $("[data-delete]", li).addEventListener("click", async () => {
      try {
        await api("DELETE", "/api/queue/" + id);
        li.remove();
        const depth = $("[data-queue-depth]");
        if (depth) depth.textContent = String(queueIds().length);
      } catch (e) { say(msg, e.message, false); }
    });
    for (const button of $all("[data-move]", li)) {
      button.addEventListener("click", async () => {
        const ids = queueIds();
        const i = ids.indexOf(id);
        const j = i + Number(button.dataset.move);
        if (j < 0 || j >= ids.length) return;
        [ids[i], ids[j]] = [ids[j], ids[i]];
        try {
          await api("POST", "/api/queue/reorder", { ids });
          const list = li.parentElement;
          for (const other of ids) list.appendChild(document.getElementById("req-" + other));
          say(msg, "moved", true);
        } catch (e) { say(msg, e.message, false); }
      });
    }
  }
}

function wireLog() {
  const pre = $("[data-log]");
  if (!pre || !window.EventSource) return;
  const state = $("[data-live-state]");
  const source = new EventSource(pre.dataset.stream);
  source.onopen = () => say(state, "live", true);
  source.onmessage = (ev) => {
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    pre.appendChild(document.createTextNode(ev.data + "\n"));  // text, never HTML
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  };
  source.addEventListener("reset", (ev) => {
    pre.textContent = "";
    say(state, "live (new log: " + ev.data + ")", true);
  });
  source.addEventListener("idle", () => {
    source.close();
    say(state, "stopped after a quiet spell; reload to follow again", true);
  });
  source.onerror = () => say(state, "reconnecting…", false);
}

function wireHintFilter() {
  const input = $("[data-hint-filter]");
  if (!input) return;
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of $all("[data-hint-row]")) {
      const text = row.textContent.toLowerCase();
      row.hidden = !words.every((w) => text.includes(w));
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  renderCharts();
  wireJump();
  wireToken();
  wireTrigger();
  wireRetry();
  wireQueue();
  wireDead();
  wireLog();
  wireHintFilter();
});
