// Agent console: polls the queue and the open conversation; all text goes in via textContent.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem("convssl.agentToken") || "";
  let agent = sessionStorage.getItem("convssl.agentName") || "";
  let known = new Set();
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
    const me = await api("GET", "/v1/agent/me");
    if (me.account) agent = me.agent;
    $("login").hidden = true;
    $("console-body").hidden = false;
    $("whoami").textContent = "Signed in as " + (agent || "Agent") + (me.account ? "." : " (shared token).");
    showServedModel();
    await loadLabels();
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

  // Suggestions as the agent types: the classifier's intents and the new intents agents confirmed.
  async function loadLabels() {
    const data = await api("GET", "/v1/agent/labels");
    known = new Set(data.labels.concat(data.new_intents));
    const list = $("intent-labels");
    list.replaceChildren(...[...known].sort().map((l) => { const o = el("option"); o.value = l; return o; }));
    checkLabel();
  }

  // A label the classifier does not know needs an explicit "new intent" tick: a typo must not
  // become a class in the next fine-tune.
  function checkLabel() {
    const label = $("intent-label").value.trim();
    const unknown = label !== "" && !known.has(label);
    $("new-intent-row").hidden = !unknown;
    if (!unknown) $("new-intent").checked = false;
    $("label-note").textContent = unknown ? "\u201c" + label + "\u201d is not an intent of the classifier." : "";
  }

  function when(ts) { return new Date(ts * 1000).toLocaleTimeString(); }

  function labelText(m) {
    const h = m.label_history || [];
    if (!h.length) return "";
    const last = h[h.length - 1];
    let text = " \u00b7 labelled: " + last.label + " by " + (last.agent || "?") + (last.new_intent ? " (new intent)" : "");
    if (h.length > 1) text += " \u00b7 earlier: " + h.slice(0, -1).map((x) => x.label + " (" + (x.agent || "?") + ")").join(", ");
    return text;
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
        li.append(el("span", "meta", "model: " + m.intent + " (" + pct(m.confidence || 0) + ")" + labelText(m)));
        if (m.top.length) lastTop = m.top;
      }
      if (m.rating) li.append(el("span", "meta", m.rating > 0 ? "user rated helpful" : "user rated not helpful"));
      ol.append(li);
    }
    const key = current + ":" + data.messages.length;
    if (key !== shown) { shown = key; ol.scrollTop = ol.scrollHeight; } else { ol.scrollTop = keep; }
    const words = { take: "took the conversation", reply: "replied", label: "labelled", resolve: "resolved it" };
    $("activity").replaceChildren(...(data.actions || []).map((a) => el("li", "action",
      when(a.created_at) + " " + a.agent + " " + (words[a.action] || a.action) + (a.detail ? " " + a.detail : ""))));
    const g = $("guesses");
    g.replaceChildren(el("span", "muted", "Top guesses: "));
    for (const [label, p] of lastTop) {
      const b = el("button", "guess", label + " " + pct(p));
      b.type = "button";
      b.addEventListener("click", () => { $("intent-label").value = label; checkLabel(); });
      g.append(b);
    }
  }

  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    agent = $("agent-name").value.trim();
    sessionStorage.setItem("convssl.agentToken", token);
    sessionStorage.setItem("convssl.agentName", agent);
    try { await signIn(); } catch (err) { /* message shown */ }
  });
  $("intent-label").addEventListener("input", checkLabel);
  $("take").addEventListener("click", async () => {
    await api("POST", "/v1/agent/sessions/" + encodeURIComponent(current) + "/take", { agent: agent || undefined });
    await refresh();
  });
  $("reply-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("reply").value.trim();
    if (!text) return;
    await api("POST", "/v1/agent/sessions/" + encodeURIComponent(current) + "/reply", { text: text, agent: agent || undefined });
    $("reply").value = "";
    await loadThread();
  });
  $("reply").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("reply-form").requestSubmit(); }
  });
  $("resolve-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const label = $("intent-label").value.trim();
    const isNew = label !== "" && !known.has(label);
    if (isNew && !$("new-intent").checked) {
      showError("\u201c" + label + "\u201d is not an intent of the classifier: pick a suggestion, or tick \u201cAdd as a new intent\u201d.");
      $("intent-label").focus();
      return;
    }
    const body = { agent: agent || undefined };
    if (label) { body.label = label; body.new_intent = isNew; }
    await api("POST", "/v1/agent/sessions/" + encodeURIComponent(current) + "/resolve", body);
    $("intent-label").value = "";
    checkLabel();
    if (isNew) await loadLabels();
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
