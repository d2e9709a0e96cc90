// A scriptable WebSocket client on Node.js + the npm `ws` package, for the interop tests
// (tests/interop/test_js_client.py). It shows that the frame contract is usable from a
// language other than Python: JSON is made and parsed by V8, MessagePack by @msgpack/msgpack.
//
// Driven by JSON lines on stdin, one command per line:
//   {"op":"connect","url":"ws://…","protocols":["wasmcloud.messaging.v1"],"options":{}}
//   {"op":"send","text":"…"}                 a text frame, sent as is
//   {"op":"send_json","value":{…}}           a text frame: JSON.stringify(value)
//   {"op":"send_binary_b64","data":"…"}      a binary frame with these (base64) bytes
//   {"op":"send_msgpack","value":{…}}        a binary frame: MessagePack of value
//   {"op":"close","code":1000,"reason":"…"}  code and reason optional
// In "value", {"$bytes":"<base64>"} stands for a byte string (a Uint8Array in JS).
//
// Reports JSON lines on stdout:
//   {"event":"ready"}                        modules loaded, reading commands
//   {"event":"open","protocol":"…","extensions":"…"}
//   {"event":"frame","binary":false,"data":"<text>","json":<JSON.parse(data)>}
//   {"event":"frame","binary":true,"data":"<base64>","msgpack":<decoded, byte strings as
//       {"$bytes":"<base64>"}>}
//   {"event":"close","code":N,"reason":"…"}
//   {"event":"error","op":"…"?,"message":"…"}
// A frame that cannot be decoded gets "decode_error" instead of "json"/"msgpack".
// The client exits when stdin ends.

import { createInterface } from "node:readline";
import { decode, encode } from "@msgpack/msgpack";
import WebSocket from "ws";

let ws = null;

function emit(event) {
  process.stdout.write(`${JSON.stringify(event, bytesToJson)}\n`);
}

function bytesToJson(_key, value) {
  return value instanceof Uint8Array
    ? { $bytes: Buffer.from(value).toString("base64") }
    : value;
}

function jsonToBytes(value) {
  if (Array.isArray(value)) return value.map(jsonToBytes);
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$bytes") {
      return new Uint8Array(Buffer.from(value.$bytes, "base64"));
    }
    return Object.fromEntries(keys.map((k) => [k, jsonToBytes(value[k])]));
  }
  return value;
}

function socket() {
  if (ws === null) throw new Error("not connected");
  return ws;
}

function send(op, data) {
  socket().send(data, (err) => {
    if (err) emit({ event: "error", op, message: err.message });
  });
}

const commands = {
  connect({ url, protocols = [], options = {} }) {
    if (ws !== null) throw new Error("already connected");
    const sock = new WebSocket(url, protocols, options);
    ws = sock;
    sock.on("open", () => {
      emit({ event: "open", protocol: sock.protocol, extensions: sock.extensions });
    });
    sock.on("message", (data, isBinary) => {
      const frame = { event: "frame", binary: isBinary };
      if (isBinary) {
        frame.data = data.toString("base64");
        try {
          // A plain Uint8Array view (as a browser would have), so that decoded bins are
          // Uint8Arrays rather than Buffer slices (which JSON.stringify turns into arrays).
          frame.msgpack = decode(new Uint8Array(data.buffer, data.byteOffset, data.length));
        } catch (err) {
          frame.decode_error = err.message;
        }
      } else {
        frame.data = data.toString("utf8"); // ws has already checked it is valid UTF-8
        try {
          frame.json = JSON.parse(frame.data);
        } catch (err) {
          frame.decode_error = err.message;
        }
      }
      emit(frame);
    });
    sock.on("error", (err) => emit({ event: "error", message: err.message }));
    sock.on("close", (code, reason) => {
      if (ws === sock) ws = null;
      emit({ event: "close", code, reason: reason.toString("utf8") });
    });
  },
  send({ text }) {
    send("send", String(text));
  },
  send_json({ value }) {
    send("send_json", JSON.stringify(value));
  },
  send_binary_b64({ data }) {
    send("send_binary_b64", Buffer.from(data, "base64"));
  },
  send_msgpack({ value }) {
    send("send_msgpack", encode(jsonToBytes(value)));
  },
  close({ code, reason }) {
    socket().close(code, reason);
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
  if (ws !== null) ws.terminate();
});
emit({ event: "ready" });
