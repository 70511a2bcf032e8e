// Agent console: polls the queue and the open conversation; all text goes in via textContent.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem("convssl.agentToken") || "";
  let agent = sessionStorage.getItem("convssl.agentName") || "Agent";
  let current = null;
  let timer = null;
  let shown = "";

  function el(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  function showError(text) { const e = $("console-error"); e.textContent = text; e.hidden = !text; }

  async function api(method, url, body) {
    const opts = { method: method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(url, opts);
    const data = await r.json().catch(() => ({}));
    if (r.status === 401 || r.status === 503) { signOut(data.error || "Sign-in failed"); throw new Error("auth"); }
    if (!r.ok) { showError(data.error || ("Request failed (" + r.status + ")")); throw new Error("http"); }
    showError("");
    return data;
  }

  function signOut(message) {
    sessionStorage.removeItem("convssl.agentToken");
    token = "";
    $("console-body").hidden = true;
    $("login").hidden = false;
    $("whoami").textContent = "";
    if (timer) clearInterval(timer);
    showError(message);
  }

  async function signIn() {
    const data = await api("GET", "/v1/agent/labels");
    $("login").hidden = true;
    $("console-body").hidden = false;
    $("whoami").textContent = "Signed in as " + agent + ".";
    showServedModel();
    const list = $("intent-labels");
    list.replaceChildren(...data.labels.map((l) => { const o = el("option"); o.value = l; return o; }));
    await refresh();
    timer = setInterval(refresh, 1000);
  }

  // The classifier in service: a registered version (models:/NAME@ALIAS) or a folder.
  async function showServedModel() {
    const r = await fetch("/healthz").catch(() => null);
    const c = r && r.ok ? ((await r.json()).classifier || {}) : {};
    let text = "";
    if (c.name) {
      const aliases = (c.aliases || []).length ? " (" + c.aliases.join(", ") + ")" : "";
      text = "Model: " + c.name + " version " + c.version + aliases;
    } else if (c.path) {
      text = "Model: " + c.path;
    }
    $("served-model").textContent = text;
  }

  function pct(p) { return Math.round(p * 100) + "%"; }

  async function refresh() {
    const data = await api("GET", "/v1/agent/queue?status=queued,agent");
    const ul = $("queue");
    ul.replaceChildren();
    $("queue-empty").hidden = data.sessions.length > 0;
    for (const s of data.sessions) {
      const li = el("li", "queue-item" + (current === s.id ? " selected" : ""));
      const b = el("button", "queue-open");
      b.type = "button";
      b.dataset.session = s.id;
      b.append(el("span", "badge badge-" + s.status, s.status === "queued" ? "waiting" : "with " + (s.agent || "agent")));
      b.append(el("span", "preview", s.last_message ? s.last_message.text : "(no messages)"));
      b.append(el("span", "muted small", (s.escalation_reason || "").replace(/_/g, " ")));
      b.addEventListener("click", () => open(s.id));
      li.append(b);
      ul.append(li);
    }
    if (current) await loadThread();
  }

  async function open(id) {
    current = id;
    $("thread-actions").hidden = false;
    await loadThread();
    $("reply").focus();
  }

  async function loadThread() {
    const data = await api("GET", "/v1/agent/sessions/" + encodeURIComponent(current));
    const s = data.session;
    $("thread-title").textContent = "Conversation " + s.id.slice(0, 8) + " — " + s.status;
    $("take").hidden = s.status === "agent";
    const ol = $("thread");
    const keep = ol.scrollTop;
    ol.replaceChildren();
    let lastTop = [];
    for (const m of data.messages) {
      const li = el("li", "msg msg-" + m.role);
      li.dataset.id = String(m.id);
      const who = m.role === "user" ? "User" : m.role === "bot" ? "Bot" : "Agent";
      li.append(el("span", "who", who));
      li.append(el("p", "text", m.text));
      if (m.role === "user" && m.intent) {
        li.append(el("span", "meta", "model: " + m.intent + " (" + pct(m.confidence || 0) + ")" + (m.label ? " · labelled: " + m.label : "")));
        if (m.top.length) lastTop = m.top;
      }
      if (m.rating) li.append(el("span", "meta", m.rating > 0 ? "user rated helpful" : "user rated not helpful"));
      ol.append(li);
    }
    const key = current + ":" + data.messages.length;
    if (key !== shown) { shown = key; ol.scrollTop = ol.scrollHeight; } else { ol.scrollTop = keep; }
    const g = $("guesses");
    g.replaceChildren(el("span", "muted", "Top guesses: "));
    for (const [label, p] of lastTop) {
      const b = el("button", "guess", label + " " + pct(p));
      b.type = "button";
      b.addEventListener("click", () => { $("intent-label").value = label; });
      g.append(b);
    }
  }

  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    agent = $("agent-name").value.trim() || "Agent";
    sessionStorage.setItem("convssl.agentToken", token);
    sessionStorage.setItem("convssl.agentName", agent);
    try { await signIn(); } catch (err) { /* message shown */ }
  });
  $("take").addEventListener("click", async () => {
    await api("POST", "/v1/agent/sessions/" + encodeURIComponent(current) + "/take", { agent: agent });
    await refresh();
  });
  $("reply-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("reply").value.trim();
    if (!text) return;
    await api("POST", "/v1/agent/sessions/" + encodeURIComponent(current) + "/reply", { text: text, agent: agent });
    $("reply").value = "";
    await loadThread();
  });
  $("reply").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("reply-form").requestSubmit(); }
  });
  $("resolve-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const label = $("intent-label").value.trim();
    await api("POST", "/v1/agent/sessions/" + encodeURIComponent(current) + "/resolve", label ? { label: label, agent: agent } : { agent: agent });
    $("intent-label").value = "";
    current = null;
    $("thread-actions").hidden = true;
    $("thread").replaceChildren();
    $("guesses").replaceChildren();
    $("thread-title").textContent = "Resolved. Select a conversation";
    await refresh();
  });
  $("agent-name").value = agent;
  if (token) signIn().catch(() => {});
})();
