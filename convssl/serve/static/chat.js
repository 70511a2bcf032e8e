// Chat page: all user-supplied text is inserted with textContent, never as HTML.
"use strict";
(function () {
  const log = document.getElementById("log");
  const form = document.getElementById("composer");
  const input = document.getElementById("message");
  const sendBtn = document.getElementById("send");
  const errorBox = document.getElementById("error");
  const statusBox = document.getElementById("status");
  const seen = new Set();
  let sessionId = sessionStorage.getItem("convssl.session") || null;
  let events = null;
  let lastId = 0;

  const WHO = { user: "You", bot: "Bot", agent: "Agent", system: "Notice" };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function addMessage(msg) {
    if (msg.id && seen.has(msg.id) && msg.role !== "system") return;
    if (msg.id) { seen.add(msg.id); lastId = Math.max(lastId, msg.id); }
    const item = el("li", "msg msg-" + msg.role);
    item.dataset.role = msg.role;
    if (msg.id) item.dataset.id = String(msg.id);
    const who = el("span", "who", WHO[msg.role] || msg.role);
    const body = el("p", "text", msg.text);
    item.append(who, body);
    if (msg.role === "bot" && msg.id) item.append(ratingButtons(msg.id));
    log.append(item);
    item.scrollIntoView({ block: "end" });
  }

  function ratingButtons(messageId) {
    const box = el("div", "rate");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Rate this reply");
    for (const [value, label] of [["up", "Helpful"], ["down", "Not helpful"]]) {
      const b = el("button", "rate-btn rate-" + value, label);
      b.type = "button";
      b.dataset.rating = value;
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", () => rate(messageId, value, box, b));
      box.append(b);
    }
    return box;
  }

  async function rate(messageId, rating, box, button) {
    const res = await post("/v1/feedback", { session_id: sessionId, message_id: messageId, rating: rating });
    if (res.ok) {
      for (const b of box.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === button));
      box.dataset.rated = rating;
    }
  }

  async function post(url, body) {
    try {
      const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const data = await r.json().catch(() => ({}));
      if (!r.ok) showError(data.error || ("Request failed (" + r.status + ")"));
      return { ok: r.ok, data: data };
    } catch (e) {
      showError("Cannot reach the server. Check your connection and try again.");
      return { ok: false, data: {} };
    }
  }

  function showError(text) { errorBox.textContent = text; errorBox.hidden = false; }
  function clearError() { errorBox.hidden = true; errorBox.textContent = ""; }

  function setStatus(status, agent) {
    if (status === "queued") statusBox.textContent = "Waiting for a member of our team. They will answer here.";
    else if (status === "agent") statusBox.textContent = "You are chatting with " + (agent || "a member of our team") + ".";
    else statusBox.textContent = "You are chatting with our bot. Ask for a person at any time.";
    document.body.dataset.status = status;
  }

  function listen() {
    if (!sessionId || events) return;
    events = new EventSource("/v1/sessions/" + encodeURIComponent(sessionId) + "/events?after=" + lastId);
    events.addEventListener("message", (e) => addMessage(JSON.parse(e.data)));
    events.addEventListener("status", (e) => { const s = JSON.parse(e.data); setStatus(s.status, s.agent); });
  }

  async function restore() {
    if (!sessionId) return;
    const r = await fetch("/v1/sessions/" + encodeURIComponent(sessionId) + "/messages");
    if (!r.ok) { sessionStorage.removeItem("convssl.session"); sessionId = null; return; }
    const data = await r.json();
    data.messages.forEach(addMessage);
    setStatus(data.status);
    listen();
  }

  async function send() {
    const text = input.value.trim();
    if (!text) { showError("Please type a message first."); return; }
    clearError();
    sendBtn.disabled = true;
    const res = await post("/v1/chat", sessionId ? { session_id: sessionId, text: text } : { text: text });
    sendBtn.disabled = false;
    if (!res.ok) return;
    const d = res.data;
    input.value = "";
    if (!sessionId) { sessionId = d.session_id; sessionStorage.setItem("convssl.session", sessionId); }
    addMessage({ id: d.user_message_id, role: "user", text: text });
    if (d.notice) addMessage({ role: "system", text: d.reply });
    else addMessage({ id: d.message_id, role: "bot", text: d.reply });
    if (d.escalated && !d.notice) setStatus("queued");
    listen();
    input.focus();
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
  });
  restore();
})();
