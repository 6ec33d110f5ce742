// Switchboard web chat: one chat per browser tab (the id lives in sessionStorage).
(() => {
  "use strict";
  const base = document.body.dataset.base;
  const keys = { chat: "switchboard.chat", token: "switchboard.token", history: "switchboard.history" };
  const $ = (id) => document.getElementById(id);
  const list = $("messages"), status = $("status"), composer = $("composer"), text = $("text");
  const auth = $("auth"), tokenInput = $("token");

  const randomId = () => Array.from(crypto.getRandomValues(new Uint8Array(12)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  const load = (key, fallback) => {
    try { return JSON.parse(sessionStorage.getItem(key)) ?? fallback; } catch { return fallback; }
  };

  let chatId = sessionStorage.getItem(keys.chat);
  if (!chatId) { chatId = randomId(); sessionStorage.setItem(keys.chat, chatId); }
  let token = sessionStorage.getItem(keys.token) || "";
  let history = load(keys.history, []);   // [{id, from: "me"|"bot"|"note", text, state, media}]
  let ws = null, retryMs = 500, locked = false;

  const save = () => sessionStorage.setItem(keys.history, JSON.stringify(history.slice(-200)));
  const setStatus = (state, label) => { status.dataset.state = state; status.textContent = label; };

  function render(entry) {
    let li = document.getElementById("m-" + entry.id);
    if (!li) {
      li = document.createElement("li");
      li.id = "m-" + entry.id;
      list.appendChild(li);
    }
    li.className = `msg ${entry.from}` + (entry.from === "me" ? ` ${entry.state}` : "");
    li.textContent = entry.text || "";
    if (entry.media) {
      const m = entry.media;
      const node = m.mime.startsWith("image/") ? Object.assign(document.createElement("img"), { src: m.data, alt: m.filename })
        : Object.assign(document.createElement("a"), { href: m.data, download: m.filename, textContent: m.filename });
      li.prepend(node);
    }
    list.scrollTop = list.scrollHeight;
  }
  function add(entry) { history.push(entry); save(); render(entry); }
  function note(message) { render({ id: randomId(), from: "note", text: message }); }

  function transmit(entry) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "message", id: entry.id, text: entry.text }));
    }
  }
  // After a reconnect: resend what was never acknowledged (the server drops duplicates).
  function sendPending() {
    history.filter((e) => e.from === "me" && e.state === "pending").forEach(transmit);
  }

  function connect() {
    if (locked) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ chat: chatId });
    if (token) query.set("token", token);
    setStatus("connecting", "connecting…");
    ws = new WebSocket(`${scheme}//${location.host}${base}/ws?${query}`);
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "ready") {
        retryMs = 500;
        setStatus("online", "online");
        sendPending();
      } else if (frame.type === "ack") {
        const entry = history.find((e) => e.id === frame.id);
        if (entry) { entry.state = "sent"; save(); render(entry); }
      } else if (frame.type === "message") {
        add({ id: frame.id, from: "bot", text: frame.text });
      } else if (frame.type === "media") {
        add({ id: frame.id, from: "bot", text: frame.caption || "",
              media: { mime: frame.mime, filename: frame.filename, data: frame.data } });
      } else if (frame.type === "auth_required") {
        locked = true;
      } else if (frame.type === "error") {
        note(frame.message);
      }
    };
    ws.onclose = (event) => {
      if (event.code === 4401 || locked) {
        locked = true;
        if (token) note("That token was not accepted.");
        token = "";
        sessionStorage.removeItem(keys.token);
        setStatus("locked", "token needed");
        auth.hidden = false;
        tokenInput.focus();
        return;
      }
      setStatus("offline", "offline, reconnecting…");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  }

  auth.addEventListener("submit", (event) => {
    event.preventDefault();
    token = tokenInput.value.trim();
    if (!token) return;
    sessionStorage.setItem(keys.token, token);
    tokenInput.value = "";
    auth.hidden = true;
    locked = false;
    connect();
    text.focus();
  });

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = text.value;
    if (!value.trim()) return;
    text.value = "";
    const entry = { id: randomId(), from: "me", text: value, state: "pending" };
    add(entry);
    transmit(entry);
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); composer.requestSubmit(); }
  });
  $("new-chat").addEventListener("click", () => {
    sessionStorage.removeItem(keys.chat);
    sessionStorage.removeItem(keys.history);
    location.reload();
  });

  history.forEach(render);
  connect();
})();
