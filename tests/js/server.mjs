// A scriptable WebSocket SERVER on Node.js + the npm `ws` package, for the client-mode
// interop tests (tests/interop/test_js_server.py): the provider connects out to it.
//
//   node server.mjs [--reject-status 401] [--port N]
//
// Listens on 127.0.0.1 (port 0 = any free port unless --port). With --reject-status S every
// upgrade is answered with HTTP S (e.g. 401) instead of 101.
//
// Driven by JSON lines on stdin, one command per line:
//   {"op":"send","text":"…","id":N?}            a text frame, sent as is
//   {"op":"send_binary_b64","data":"<base64>","id":N?}  a binary frame with these bytes
//   {"op":"close_all","code":N?,"reason":"…"?}   close handshake with every connection
//   {"op":"stop","code":N?,"reason":"…"?}        stop listening and drop every connection:
//                                                without "code" abruptly (TCP close, no close
//                                                frame), with "code" by a close handshake
//   {"op":"start"}                               listen again, on the same port
//   {"op":"reject","status":N|null}              refuse later upgrades with HTTP N (null: accept)
// "send…" goes to every open connection, or only to connection "id" when given.
//
// Reports JSON lines on stdout (t = performance.now() in ms, id = connection number):
//   {"event":"listening","port":N}
//   {"event":"connection","t":…,"id":N,"path":"/…","headers":{…},"raw_headers":[[k,v],…],
//       "protocol":"<negotiated>"}           one per upgrade attempt; a refused one has
//       "id":null,"protocol":null,"rejected":<status> (and "error" when ws refused it)
//   {"event":"frame","id":N,"binary":false,"data":"<text>","json":<JSON.parse(data)>}
//       ("json" only when the text is JSON)
//   {"event":"frame","id":N,"binary":true,"data":"<base64>"}
//   {"event":"close","id":N,"code":N,"reason":"…"}
//   {"event":"stopped"}                     after "stop", once the listener and every
//                                           connection are closed (after their "close")
//   {"event":"error","op":"…"?,"message":"…"}
// The server exits when stdin ends.

import { createServer, STATUS_CODES } from "node:http";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { WebSocketServer } from "ws";

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value)) throw new Error(`${name} needs an integer`);
  return value;
}

let rejectStatus = option("--reject-status", null);
let port = option("--port", 0);
let nextId = 1;
let listening = false;
const open = new Map(); // id -> WebSocket

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function pairs(rawHeaders) {
  const out = [];
  for (let i = 0; i < rawHeaders.length; i += 2) out.push([rawHeaders[i], rawHeaders[i + 1]]);
  return out;
}

function refuse(socket, status, message) {
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Refused"}\r\n` +
      "Connection: close\r\nContent-Type: text/plain\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

// noServer: the upgrade is handled here, so every attempt is seen (refused ones too).
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const server = createServer((_req, res) => {
  res.writeHead(426, { "Content-Type": "text/plain" }).end("a WebSocket server\n");
});

function attempt(req, t) {
  return {
    event: "connection",
    t,
    path: req.url,
    headers: req.headers,
    raw_headers: pairs(req.rawHeaders),
  };
}

// ws validated the upgrade and refused it (bad key, version, ...): report, answer 400.
wss.on("wsClientError", (err, socket, req) => {
  emit({ ...attempt(req, performance.now()), id: null, protocol: null, rejected: 400, error: err.message });
  refuse(socket, 400, err.message);
});

server.on("upgrade", (req, socket, head) => {
  const t = performance.now();
  if (rejectStatus !== null) {
    emit({ ...attempt(req, t), id: null, protocol: null, rejected: rejectStatus });
    refuse(socket, rejectStatus, "refused by server.mjs");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const id = nextId++;
    open.set(id, ws);
    emit({ ...attempt(req, t), id, protocol: ws.protocol });
    ws.on("message", (data, isBinary) => {
      const frame = { event: "frame", id, binary: isBinary };
      if (isBinary) {
        frame.data = data.toString("base64");
      } else {
        frame.data = data.toString("utf8"); // ws has already checked it is valid UTF-8
        try {
          frame.json = JSON.parse(frame.data);
        } catch {
          // not JSON (raw mode): "data" only
        }
      }
      emit(frame);
    });
    ws.on("error", (err) => emit({ event: "error", id, message: err.message }));
    ws.on("close", (code, reason) => {
      open.delete(id);
      emit({ event: "close", id, code, reason: reason.toString("utf8") });
    });
  });
});

server.on("error", (err) => emit({ event: "error", message: err.message }));

function listen() {
  if (listening) throw new Error("already listening");
  listening = true;
  server.listen(port, "127.0.0.1", () => {
    port = server.address().port;
    emit({ event: "listening", port });
  });
}

function targets(op, id) {
  const socks = id === undefined ? [...open.values()] : [open.get(id)].filter(Boolean);
  if (socks.length === 0) throw new Error(id === undefined ? "no open connection" : `no connection ${id}`);
  return socks.map((ws) => (data) =>
    ws.send(data, (err) => {
      if (err) emit({ event: "error", op, message: err.message });
    }),
  );
}

const commands = {
  send({ text, id }) {
    for (const send of targets("send", id)) send(String(text));
  },
  send_binary_b64({ data, id }) {
    if (typeof data !== "string") throw new Error('"data" must be a base64 string');
    for (const send of targets("send_binary_b64", id)) send(Buffer.from(data, "base64"));
  },
  close_all({ code, reason }) {
    for (const ws of open.values()) ws.close(code, reason);
  },
  stop({ code, reason }) {
    if (!listening) throw new Error("not listening");
    listening = false;
    const ended = [...open.values()].map((ws) => new Promise((done) => ws.once("close", done)));
    ended.push(new Promise((done) => server.close(done))); // once every connection ended
    Promise.all(ended).then(() => emit({ event: "stopped" }));
    for (const ws of open.values()) {
      if (code === undefined) ws.terminate();
      else ws.close(code, reason);
    }
    server.closeIdleConnections();
  },
  start() {
    listen();
  },
  reject({ status }) {
    rejectStatus = status ?? null;
  },
};

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let op;
  try {
    const cmd = JSON.parse(line);
    op = cmd.op;
    const run = Object.hasOwn(commands, op) ? commands[op] : undefined;
    if (run === undefined) throw new Error(`unknown op ${JSON.stringify(op)}`);
    run(cmd);
  } catch (err) {
    emit({ event: "error", op, message: err.message });
  }
});
lines.on("close", () => {
  for (const ws of open.values()) ws.terminate();
  server.close();
  process.exit(0);
});
listen();
