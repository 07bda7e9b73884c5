// moltbot web chat + control page. No inline code, no innerHTML: all text goes through
// textContent. The token is only sent in the connect frame; only the rotating web session id
// is kept (sessionStorage), never the token.
"use strict";

(() => {
  const SESSION_KEY = "moltbot.session";
  const $ = (id) => document.getElementById(id);
  const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";

  let ws = null;
  let nextId = 1;
  let online = false;
  let wantOnline = false;
  let retryDelay = 500;
  const pending = new Map(); // request id -> {resolve, reject}
  const bubbles = new Map(); // chat.send request id -> assistant bubble element

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function setState(text, isOnline) {
    const state = $("conn-state");
    state.textContent = text;
    state.classList.toggle("online", Boolean(isOnline));
  }

  function errorText(error) {
    if (!error) return "request failed";
    return error.hint ? `${error.message} (${error.hint})` : error.message;
  }

  // --- protocol ----------------------------------------------------------------------------
  function request(method, params) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject({ code: "offline", message: "not connected to the gateway" });
        return;
      }
      const id = String(nextId++);
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ type: "req", id, method, params: params || {} }));
    });
  }

  function open(auth) {
    return new Promise((resolve, reject) => {
      const sock = new WebSocket(wsUrl);
      let settled = false;
      ws = sock;
      sock.onopen = () => {
        const id = String(nextId++);
        pending.set(id, {
          resolve: (payload) => { settled = true; resolve(payload); },
          reject: (error) => { settled = true; reject(error); },
        });
        sock.send(JSON.stringify({
          type: "req", id, method: "connect", params: { auth, client: "web" },
        }));
      };
      sock.onmessage = (ev) => onFrame(ev.data);
      sock.onclose = (ev) => {
        for (const p of pending.values()) p.reject({ code: "closed", message: "connection closed" });
        pending.clear();
        if (ws === sock) ws = null;
        online = false;
        setState("offline", false);
        if (!settled) reject({ code: "closed", message: ev.reason || "connection closed" });
        else if (wantOnline) scheduleReconnect();
      };
    });
  }

  function onFrame(text) {
    let frame;
    try { frame = JSON.parse(text); } catch (_e) { return; }
    if (frame.type === "res") {
      const p = pending.get(frame.id);
      if (!p) return;
      pending.delete(frame.id);
      if (frame.ok) p.resolve(frame.payload); else p.reject(frame.error);
    } else if (frame.type === "event") {
      onEvent(frame.event, frame.payload || {});
    }
  }

  function onEvent(name, payload) {
    if (name === "chat") onChat(payload);
    else if (name === "whatsapp.qr") onWhatsAppQr(payload);
    else if (name.startsWith("tree") || name.startsWith("supervision")) scheduleTree();
    else if (name.startsWith("approval")) {
      if (name === "approval") onApproval(payload);
      loadApprovals();
    }
  }

  // an approval as it is raised: a card in the chat with the exact command and its buttons
  const cards = new Map();
  function onApproval(a) {
    const id = String(a.id || "");
    if (!id) return;
    let card = cards.get(id);
    if (a.state === "pending" && !card) {
      card = el("div", "msg approval");
      card.dataset.id = id;
      card.appendChild(el("strong", "", `Approval needed (#${id}): the assistant wants to run`));
      card.appendChild(el("pre", "", String(a.command || "")));
      const approve = el("button", "approve", "Approve");
      approve.type = "button";
      approve.addEventListener("click", () => resolveApproval(id, "approve"));
      const deny = el("button", "deny", "Deny");
      deny.type = "button";
      deny.addEventListener("click", () => resolveApproval(id, "deny"));
      card.append(approve, " ", deny);
      cards.set(id, card);
      const box = $("messages");
      box.appendChild(card);
      box.scrollTop = box.scrollHeight;
    } else if (a.state !== "pending" && card) {
      for (const b of card.querySelectorAll("button")) b.disabled = true;
      card.classList.add("answered");
      card.appendChild(el("span", "muted", " answered"));
    }
  }

  // --- login / reconnect -------------------------------------------------------------------
  async function login(auth) {
    const hello = await open(auth);
    sessionStorage.setItem(SESSION_KEY, hello.session);
    online = true;
    wantOnline = true;
    retryDelay = 500;
    setState("online", true);
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    loadTree();
    loadApprovals();
    loadJobs();
  }

  function showLogin(message) {
    wantOnline = false;
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
  }

  function scheduleReconnect() {
    const session = sessionStorage.getItem(SESSION_KEY);
    if (!session) { showLogin("disconnected"); return; }
    setState("reconnecting…", false);
    setTimeout(async () => {
      try {
        await login({ session: sessionStorage.getItem(SESSION_KEY) || "" });
      } catch (error) {
        if (error && error.code === "closed") {
          retryDelay = Math.min(retryDelay * 2, 10000);
          scheduleReconnect();
        } else {
          sessionStorage.removeItem(SESSION_KEY);
          showLogin(errorText(error));
        }
      }
    }, retryDelay);
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("token");
    $("login-error").textContent = "";
    try {
      await login({ token: input.value.trim() });
      input.value = "";
    } catch (error) {
      showLogin(errorText(error));
    }
  });

  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(SESSION_KEY);
    wantOnline = false;
    if (ws) ws.close();
    showLogin("");
  });

  // --- chat --------------------------------------------------------------------------------
  function addMessage(kind, text) {
    const box = $("messages");
    const node = el("div", `msg ${kind}`, text);
    box.appendChild(node);
    box.scrollTop = box.scrollHeight;
    return node;
  }

  function onChat(p) {
    const bubble = bubbles.get(p.req);
    if (!bubble) return;
    if (p.kind === "delta") bubble.textContent += p.text;
    else if (p.kind === "final") bubble.textContent = p.text;
    else if (p.kind === "tool") {
      const note = el("div", "msg tool", `tool ${p.name}: ${p.summary} [${p.status}]`);
      bubble.before(note);
    }
    $("messages").scrollTop = $("messages").scrollHeight;
  }

  // Files go in the chat.send frame as base64, so together they must stay under the frame cap
  // (gateway.max_frame_bytes, 1 MiB by default). A picture over it is scaled down here first.
  const UPLOAD_MAX = 700 * 1024;
  const IMAGE_EDGE = 1568;

  function toBase64(buffer) {
    const bytes = new Uint8Array(buffer);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(bin);
  }

  async function shrink(file) {
    const bitmap = await createImageBitmap(file);
    let scale = Math.min(1, IMAGE_EDGE / Math.max(bitmap.width, bitmap.height));
    for (let quality = 0.85; ; quality -= 0.15, scale *= 0.75) {
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", Math.max(quality, 0.5)));
      if (blob && (blob.size <= UPLOAD_MAX || canvas.width < 200)) return blob;
    }
  }

  async function readFiles(list) {
    const files = [];
    let total = 0;
    for (const file of list) {
      let blob = file;
      if (file.size > UPLOAD_MAX && file.type.startsWith("image/")) blob = await shrink(file);
      total += blob.size;
      if (total > UPLOAD_MAX) {
        throw new Error(`files sent from this page are limited to ${UPLOAD_MAX / 1024} KB in all`);
      }
      files.push({ name: file.name, blob, data: toBase64(await blob.arrayBuffer()) });
    }
    return files;
  }

  function showUploads(node, files) {
    for (const f of files) {
      if (f.blob.type.startsWith("image/")) {
        const img = el("img", "upload");
        img.alt = f.name;
        img.src = URL.createObjectURL(f.blob); // the user's own file, shown from memory
        node.appendChild(img);
      } else {
        node.appendChild(el("div", "muted", `📎 ${f.name}`));
      }
    }
  }

  $("chat-file").addEventListener("change", () => {
    const names = Array.from($("chat-file").files).map((f) => f.name);
    $("chat-files").textContent = names.length ? `attached: ${names.join(", ")}` : "";
  });

  $("chat-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("chat-input");
    const picker = $("chat-file");
    const text = input.value;
    if (!text.trim() && !picker.files.length) return;
    $("chat-error").textContent = "";
    let files = [];
    try {
      files = await readFiles(picker.files);
    } catch (error) {
      $("chat-error").textContent = error.message; // nothing sent: the text stays in the box
      return;
    }
    input.value = "";
    picker.value = "";
    $("chat-files").textContent = "";
    showUploads(addMessage("user", text), files);
    const bubble = addMessage("assistant", "");
    const id = String(nextId); // the id request() is about to use
    bubbles.set(id, bubble);
    try {
      const params = { session: "web", text };
      if (files.length) params.files = files.map((f) => ({ name: f.name, data: f.data }));
      const result = await request("chat.send", params);
      bubble.textContent = result.text;
      bubble.classList.add("done");
    } catch (error) {
      bubble.classList.add("error");
      bubble.textContent = errorText(error);
    } finally {
      bubbles.delete(id);
    }
  });

  $("chat-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      $("chat-form").requestSubmit();
    }
  });

  // --- supervision tree --------------------------------------------------------------------
  let treeTimer = null;
  function scheduleTree() {
    if (treeTimer) return;
    treeTimer = setTimeout(() => { treeTimer = null; loadTree(); }, 200);
  }

  // the same compact text as `moltbot status` (moltbot/cli/render.py figures_text)
  const FIGURE_LABELS = { in: "in", out: "out", queue: "q", turns: "turns", p50_ms: "p50",
    p99_ms: "p99", tokens_in: "tok in", tokens_out: "tok out" };
  function figuresText(figures) {
    if (!figures || typeof figures !== "object") return "";
    return Object.entries(figures).filter(([key]) => key !== "link").map(([key, value]) => {
      const label = FIGURE_LABELS[key] || key;
      if (key.endsWith("_ms") && typeof value === "number") return `${label} ${Math.round(value)}ms`;
      return `${label} ${value}`;
    }).join(" ");
  }

  // a channel's connection, as `moltbot status` says it (moltbot/channels/link.py describe)
  function linkText(link) {
    if (link.state === "retrying") {
      const text = `retrying ${link.attempt}, next in ${link.next_in_s}s`;
      return link.reason ? `${text}: ${link.reason}` : text;
    }
    if (link.state === "rejected") {
      return `rejected: ${link.reason}` + (link.fix ? ` (fix: ${link.fix})` : "");
    }
    return String(link.state || "");
  }

  // when the last message came in and the last reply went out (link.py traffic)
  function trafficText(link) {
    const ago = (at) => {
      const s = Date.now() / 1000 - at;
      if (s < 120) return `${Math.max(0, Math.round(s))}s ago`;
      if (s < 7200) return `${Math.round(s / 60)}m ago`;
      return `${(s / 3600).toFixed(1)}h ago`;
    };
    const parts = [["in", link.last_in], ["out", link.last_out]]
      .filter(([, at]) => at).map(([label, at]) => `${label} ${ago(at)}`);
    return parts.length ? parts.join(", ") : "nothing in or out yet";
  }

  function renderNode(node) {
    const li = el("li");
    li.appendChild(el("span", "node-name", node.name || node.id || "?"));
    const link = node.figures && typeof node.figures.link === "object" ? node.figures.link : null;
    let state = String(node.state || node.status || "");
    if (link && state === "running" && link.state === "rejected") state = "failed";
    if (state) {
      const cls = state.toLowerCase().replace(/[^a-z_-]/g, "");
      li.appendChild(el("span", `node-state ${cls}`, state));
    }
    if (node.restarts) li.appendChild(el("span", "muted", ` ↻${node.restarts}`));
    const figures = figuresText(node.figures);
    if (figures) li.appendChild(el("span", "muted node-figures", ` ${figures}`));
    if (link) {
      li.appendChild(el("span", `node-link ${link.state}`, ` ${linkText(link)}`));
      li.appendChild(el("span", "muted node-traffic", `; ${trafficText(link)}`));
    }
    if (Array.isArray(node.children) && node.children.length) {
      const ul = el("ul");
      for (const child of node.children) ul.appendChild(renderNode(child));
      li.appendChild(ul);
    }
    return li;
  }

  async function loadTree() {
    const root = $("tree");
    try {
      const payload = await request("status", {});
      const tree = payload.tree || payload;
      root.replaceChildren();
      $("tree-error").textContent = "";
      if (tree && (tree.name || tree.children)) root.appendChild(renderNode(tree));
      else root.appendChild(el("pre", "raw", JSON.stringify(payload, null, 2)));
    } catch (error) {
      $("tree-error").textContent = errorText(error);
    }
  }

  $("tree-refresh").addEventListener("click", loadTree);

  // --- approvals ---------------------------------------------------------------------------
  async function resolveApproval(id, decision) {
    try {
      await request("approvals.resolve", { id, decision });
    } catch (error) {
      $("approvals-error").textContent = errorText(error);
    }
    loadApprovals();
  }

  async function loadApprovals() {
    const list = $("approvals");
    try {
      const payload = await request("approvals.list", {});
      const items = payload.approvals || [];
      list.replaceChildren();
      $("approvals-error").textContent = "";
      $("approvals-empty").hidden = items.length > 0;
      for (const a of items) {
        const li = el("li");
        li.dataset.id = String(a.id);
        li.appendChild(el("strong", "", `#${a.id}`));
        if (a.session) li.appendChild(el("span", "muted", ` ${a.session}`));
        li.appendChild(el("code", "", a.command || a.summary || ""));
        const approve = el("button", "approve", "Approve");
        approve.type = "button";
        approve.addEventListener("click", () => resolveApproval(String(a.id), "approve"));
        const deny = el("button", "deny", "Deny");
        deny.type = "button";
        deny.addEventListener("click", () => resolveApproval(String(a.id), "deny"));
        li.append(approve, " ", deny);
        list.appendChild(li);
      }
    } catch (error) {
      $("approvals-error").textContent = errorText(error);
    }
  }

  $("approvals-refresh").addEventListener("click", loadApprovals);

  // --- scheduled jobs ----------------------------------------------------------------------
  function when(ts) {
    return ts ? new Date(ts * 1000).toISOString().replace(".000Z", "Z") : "never";
  }

  async function loadJobs() {
    const list = $("jobs");
    try {
      const payload = await request("cron.list", {});
      const items = payload.jobs || [];
      list.replaceChildren();
      $("jobs-error").textContent = "";
      $("jobs-empty").hidden = items.length > 0;
      for (const j of items) {
        const li = el("li");
        li.dataset.id = String(j.id);
        li.appendChild(el("strong", "", String(j.id)));
        li.appendChild(el("code", "job-spec", ` ${j.kind} ${j.spec} `));
        li.appendChild(el("span", "muted job-next", `next ${when(j.next_at)}`));
        if (j.deliver_to) li.appendChild(el("span", "muted", ` → ${j.deliver_to}`));
        li.appendChild(el("div", "job-text", String(j.text || "")));
        list.appendChild(li);
      }
    } catch (error) {
      $("jobs-error").textContent = errorText(error);
    }
  }

  $("jobs-refresh").addEventListener("click", loadJobs);

  // --- WhatsApp link: the QR of `moltbot channels login whatsapp:<account>`, drawn here ----
  const QR_SCALE = 6;
  const QR_QUIET = 4; // modules of white around the code, as scanners expect
  const WA_WORDS = {
    none: "Not linking now. Run `moltbot channels login whatsapp:ACCOUNT` on the gateway's machine; the code shows here.",
    waiting: "Scan with WhatsApp > Settings > Linked devices > Link a device (the code changes every ~20 s).",
    linked: "Linked. The account starts by itself.",
    failed: "The link did not complete; run the login again.",
  };
  let waAccount = "";

  function drawQr(rows) {
    const canvas = $("wa-qr");
    if (!rows.length) { canvas.hidden = true; return; }
    const size = (rows.length + 2 * QR_QUIET) * QR_SCALE;
    canvas.width = size;
    canvas.height = size;
    canvas.dataset.modules = String(rows.length);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    ctx.fillStyle = "#000";
    rows.forEach((row, y) => {
      for (let x = 0; x < row.length; x++) {
        if (row[x] === "1") {
          ctx.fillRect((x + QR_QUIET) * QR_SCALE, (y + QR_QUIET) * QR_SCALE, QR_SCALE, QR_SCALE);
        }
      }
    });
    canvas.hidden = false;
  }

  function onWhatsAppQr(p) {
    if (String(p.account || "") !== waAccount) return;
    const state = String(p.state || "none");
    $("wa-state").textContent = (WA_WORDS[state] || state).replace("ACCOUNT", waAccount);
    $("wa-state").dataset.state = state;
    drawQr(state === "waiting" && Array.isArray(p.rows) ? p.rows.map(String) : []);
  }

  $("wa-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    waAccount = $("wa-account").value.trim();
    $("wa-state").textContent = "…";
    const account = waAccount;
    try {
      let done = await request("whatsapp.link", { account });
      while (done.state === "waiting" && waAccount === account) { // a long scan: watch on
        done = await request("whatsapp.link", { account });
      }
      if (done.state !== "waiting") onWhatsAppQr({ account, state: done.state, rows: [] });
    } catch (error) {
      $("wa-state").textContent = errorText(error);
      $("wa-state").dataset.state = "error";
    }
  });

  // --- start -------------------------------------------------------------------------------
  const saved = sessionStorage.getItem(SESSION_KEY);
  if (saved) {
    login({ session: saved }).catch(() => {
      sessionStorage.removeItem(SESSION_KEY);
      showLogin("");
    });
  }
})();
