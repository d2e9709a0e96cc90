"""The demo page the dev mode serves at `/` (endpoint key `DEMO_PAGE=true`).

One self-contained HTML file (no external assets: it must work offline): it connects to the
endpoint, shows the session id, sends messages, shows replies and broadcasts, and manages
topic subscriptions, all with the public frame format (README "Frame format").
"""

from __future__ import annotations

import json

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wasmcloud-websocket-provider: dev page</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 12px 20px; display: flex; gap: 16px;
           align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 17px; margin: 0; font-weight: 600; }
  #status { padding: 2px 10px; border-radius: 10px; background: #a33; font-size: 13px; }
  #status.open { background: #2a7d46; }
  #session { font-family: ui-monospace, monospace; font-size: 13px; opacity: .85; }
  main { display: grid; grid-template-columns: minmax(280px, 1fr) 2fr; gap: 16px; padding: 16px; }
  @media (max-width: 720px) { main { grid-template-columns: 1fr; } }
  section { background: #fff; border-radius: 8px; padding: 14px; box-shadow: 0 1px 2px #0002; }
  h2 { font-size: 14px; margin: 0 0 10px; text-transform: uppercase; letter-spacing: .04em;
       color: #55607a; }
  label { display: block; font-size: 13px; margin: 8px 0 3px; color: #55607a; }
  input, textarea { width: 100%; box-sizing: border-box; padding: 7px; border: 1px solid #ccd;
                    border-radius: 5px; font: inherit; }
  input[type=checkbox] { width: auto; margin: 0 6px 0 0; vertical-align: middle; }
  label.check { display: flex; align-items: center; color: #1d2330; }
  button { margin-top: 8px; padding: 7px 14px; border: 0; border-radius: 5px; background: #3559c7;
           color: #fff; font: inherit; cursor: pointer; }
  button.secondary { background: #6b7489; }
  #topics { list-style: none; padding: 0; margin: 10px 0 0; }
  #topics li { display: flex; justify-content: space-between; align-items: center; gap: 8px;
               margin: 4px 0; }
  #topics code { overflow-wrap: anywhere; }
  #topics button { margin: 0; padding: 2px 8px; font-size: 12px; }
  #log { list-style: none; margin: 0; padding: 0; max-height: 70vh; overflow: auto;
         font-family: ui-monospace, monospace; font-size: 13px; }
  #log li { padding: 5px 8px; border-bottom: 1px solid #eee; word-break: break-all; }
  #log li.out { color: #55607a; }
  #log li.error { color: #a33; }
  #log li.broadcast { background: #fff7dd; }
  .hint { font-size: 12px; color: #6b7489; }
</style>
</head>
<body>
<header>
  <h1>wasmcloud-websocket-provider</h1>
  <span id="status">connecting…</span>
  <span>session: <span id="session">-</span></span>
</header>
<main>
  <div>
    <section>
      <h2>Send</h2>
      <form id="send-form">
        <label for="subject">subject</label>
        <input id="subject" value="chat">
        <label for="body">body</label>
        <textarea id="body" rows="3">hello from the browser</textarea>
        <label class="check"><input type="checkbox" id="broadcast">ask the echo component to
          broadcast it</label>
        <button type="submit" id="send">Send</button>
      </form>
      <p class="hint">The echo component answers on your session; with the box ticked it
        publishes to <code>broadcast</code>, which every open page receives.</p>
    </section>
    <section style="margin-top:16px">
      <h2>Topics</h2>
      <form id="sub-form">
        <input id="topic" value="demo.>" aria-label="topic pattern">
        <button type="submit" id="subscribe">Subscribe</button>
      </form>
      <ul id="topics"></ul>
      <p class="hint">Patterns as in NATS: <code>*</code> one token, <code>&gt;</code> the rest.
        In the dev mode the echo component publishes <code>demo.tick</code> every few
        seconds.</p>
    </section>
  </div>
  <section>
    <h2>Messages</h2>
    <ul id="log"></ul>
  </section>
</main>
<script>
const ENDPOINT_PATH = __ENDPOINT_PATH__;
const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + ENDPOINT_PATH;
const $ = (id) => document.getElementById(id);
// The topic list lives in this tab's sessionStorage like the resume token: after a reload the
// resumed session still has its subscriptions, and the list shows them again.
const topics = new Set(JSON.parse(sessionStorage.getItem("wsp.topics") || "[]"));
let ws;

function saveTopics() {
  sessionStorage.setItem("wsp.topics", JSON.stringify([...topics]));
}

function log(text, cls) {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  $("log").prepend(li);
}

function renderTopics() {
  const ul = $("topics");
  ul.innerHTML = "";
  for (const t of topics) {
    const li = document.createElement("li");
    const name = document.createElement("code");
    name.textContent = t;
    const btn = document.createElement("button");
    btn.textContent = "unsubscribe";
    btn.className = "secondary";
    btn.onclick = () => {
      ws.send(JSON.stringify({ type: "unsubscribe", subject: t }));
      topics.delete(t);
      saveTopics();
      renderTopics();
    };
    li.append(name, btn);
    ul.append(li);
  }
}

// Session resume (README "Resume"): the token and the last seq processed live in this tab's
// sessionStorage, so a reload or a dropped connection comes back to the same session.
function resumeQuery() {
  const token = sessionStorage.getItem("wsp.resume_token");
  if (!token) return "";
  const seq = sessionStorage.getItem("wsp.last_seq") || "0";
  return "?resume=" + encodeURIComponent(token) + "&last_seq=" + encodeURIComponent(seq);
}

// An endpoint with AUTH=token or AUTH=jwt: open the page as /#token=<token>. The token is
// offered as the subprotocols "bearer", <token> (browsers cannot set headers on a WebSocket);
// the fragment never reaches the server's logs.
const authToken = new URLSearchParams(location.hash.slice(1)).get("token");

function connect() {
  const protocols = ["wasmcloud.messaging.v1"];
  if (authToken) protocols.push("bearer", authToken);
  ws = new WebSocket(url + resumeQuery(), protocols);
  ws.onopen = () => { $("status").textContent = "connected"; $("status").className = "open"; };
  ws.onclose = (ev) => {
    $("status").textContent = "closed (" + ev.code + ")";
    $("status").className = "";
    $("session").textContent = "-";
    setTimeout(connect, 2000);
  };
  ws.onmessage = (ev) => {
    const frame = JSON.parse(ev.data);
    if (frame.type === "welcome") {
      $("session").textContent = frame.session_id;
      if (frame.resume_token) sessionStorage.setItem("wsp.resume_token", frame.resume_token);
      if (!frame.recovered) sessionStorage.setItem("wsp.last_seq", String(frame.seq));
      // A resumed session kept them (subscribing again changes nothing); a new one needs them.
      for (const t of topics) ws.send(JSON.stringify({ type: "subscribe", subject: t }));
      if (frame.resumed) {
        const how = frame.recovered ? "recovered" : "not recovered: resync";
        log("resumed: session " + frame.session_id + " (" + how + ")");
      } else {
        log("welcome: session " + frame.session_id);
      }
    } else if (frame.type === "error") {
      log("error " + frame.code + ": " + frame.message, "error");
    } else if (frame.type === "message") {
      if (typeof frame.seq === "number") sessionStorage.setItem("wsp.last_seq", String(frame.seq));
      const body = frame.body !== undefined ? frame.body : "(base64) " + frame.body_b64;
      const cls = frame.subject === "broadcast" ? "broadcast" : "in";
      log("← " + frame.subject + ": " + body, cls);
    }
  };
}

$("send-form").onsubmit = (ev) => {
  ev.preventDefault();
  let body = $("body").value;
  if ($("broadcast").checked) body = "broadcast: " + body;
  const frame = { type: "message", subject: $("subject").value, body };
  ws.send(JSON.stringify(frame));
  log("→ " + frame.subject + ": " + body, "out");
};

$("sub-form").onsubmit = (ev) => {
  ev.preventDefault();
  const t = $("topic").value.trim();
  if (!t || topics.has(t)) return;
  ws.send(JSON.stringify({ type: "subscribe", subject: t }));
  topics.add(t);
  saveTopics();
  renderTopics();
};

renderTopics();
connect();
</script>
</body>
</html>
"""


def render(endpoint_path: str) -> bytes:
    """The page, wired to the endpoint at `endpoint_path`."""
    # json.dumps gives a JS string literal; escaping '<' keeps it from closing the script tag.
    literal = json.dumps(endpoint_path).replace("<", "\\u003c")
    return PAGE.replace("__ENDPOINT_PATH__", literal).encode("utf-8")
