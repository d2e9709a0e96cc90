// Load generator for the benchmark harness: npm `ws` clients spread over worker threads.
//
//   node loadgen.mjs '<json config>'
//
// Config: {mode: "rt" | "hold", proto: "ws" | "nats", url, clients, window, rate,
//          warmup_s, duration_s, payload, workers, local_addrs, compression, concurrency}
//
// mode "rt" (round trips): every client keeps `window` messages in flight (closed loop), or,
// with `rate` > 0, the workers send `rate` messages/s in total spread over the clients (open
// loop). Replies come back in order per connection, so the latency of a reply is measured
// against the oldest unanswered send of that connection. stdout: "READY", "START" (after the
// warm-up: the measured window begins), then "END <json>".
//
// mode "hold": opens `clients` connections and holds them. stdout: "CONNECTED <json>".
// `welcome: true`: a connection counts as open once its first message (the provider's
// welcome) arrived, and that message is not counted.
// Every time each connection has received one more message (a broadcast round), prints
// "ROUND <n> <first receipt> <last receipt>" (wall-clock ms). stdin "quit" ends it.
//
// proto "ws": the provider's JSON frames (any echo of them counts as the reply).
// proto "nats": NATS client protocol over WebSocket (nats-server's websocket listener):
// CONNECT, SUB to a per-client inbox, PUB to `echo` with that inbox as reply, parse MSG.

import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import WebSocket from "ws";

const wallMs = () => performance.timeOrigin + performance.now();

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

// --- NATS-over-WebSocket framing ---------------------------------------------------------

class NatsParser {
  constructor(onMsg, onPong, send) {
    this.buf = "";
    this.onMsg = onMsg;
    this.onPong = onPong;
    this.send = send;
  }

  feed(data) {
    this.buf += typeof data === "string" ? data : data.toString("latin1");
    for (;;) {
      const eol = this.buf.indexOf("\r\n");
      if (eol < 0) return;
      const line = this.buf.slice(0, eol);
      if (line.startsWith("MSG ")) {
        const parts = line.split(" ");
        const size = Number(parts[parts.length - 1]);
        if (this.buf.length < eol + 2 + size + 2) return;
        this.buf = this.buf.slice(eol + 2 + size + 2);
        this.onMsg();
      } else {
        this.buf = this.buf.slice(eol + 2);
        if (line === "PING") this.send("PONG\r\n");
        else if (line === "PONG") this.onPong();
        else if (line.startsWith("-ERR")) process.stderr.write(`nats: ${line}\n`);
      }
    }
  }
}

// --- one client connection ---------------------------------------------------------------

class Client {
  constructor(cfg, index, onReply) {
    this.cfg = cfg;
    this.index = index;
    this.onReply = onReply;
    this.sentAt = [];
    this.head = 0;
    this.ready = false;
    const body = "x".repeat(cfg.payload);
    if (cfg.proto === "nats") {
      this.inbox = `_INBOX.bench.${process.pid}.${index}`;
      const payload = JSON.stringify({ subject: "bench", body });
      this.frame = `PUB echo ${this.inbox} ${Buffer.byteLength(payload)}\r\n${payload}\r\n`;
    } else {
      this.frame = JSON.stringify({ subject: "bench", body });
    }
  }

  open() {
    return new Promise((resolve, reject) => {
      const opts = { perMessageDeflate: !!this.cfg.compression, handshakeTimeout: 60000 };
      const addrs = this.cfg.local_addrs;
      if (addrs && addrs.length) opts.localAddress = addrs[this.index % addrs.length];
      const ws = new WebSocket(this.cfg.url, opts);
      this.ws = ws;
      let settled = false;
      const done = (err) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else {
          this.ready = true;
          resolve(this);
        }
      };
      ws.on("error", (err) => done(err));
      ws.on("close", () => {
        this.ready = false;
        done(new Error("closed before ready"));
      });
      if (this.cfg.proto === "nats") {
        this.parser = new NatsParser(
          () => this.received(),
          () => done(),
          (s) => ws.send(s),
        );
        let first = true;
        ws.on("message", (data) => {
          if (first) {
            first = false; // INFO
            ws.send(
              'CONNECT {"verbose":false,"pedantic":false,"protocol":1,"headers":false}\r\n' +
                `SUB ${this.inbox} 1\r\nPING\r\n`,
            );
            const text = data.toString("latin1");
            const eol = text.indexOf("\r\n");
            if (eol >= 0 && eol + 2 < text.length) this.parser.feed(text.slice(eol + 2));
            return;
          }
          this.parser.feed(data);
        });
      } else if (this.cfg.welcome) {
        // Ready once the welcome arrived: the provider sends it when the session is
        // reachable (a broadcast made after that reaches it), not at the handshake.
        let welcomed = false;
        ws.on("message", (data) => {
          if (!welcomed) {
            welcomed = true;
            done();
            return;
          }
          this.received(data.length > 15 && isError(data));
        });
      } else {
        ws.on("open", () => done());
        // An error frame (e.g. `overloaded`) answers a message too, but is counted apart.
        ws.on("message", (data) => this.received(data.length > 15 && isError(data)));
      }
    });
  }

  send() {
    this.sentAt.push(performance.now());
    this.ws.send(this.frame);
  }

  received(error = false) {
    const now = performance.now();
    let sent = now;
    if (this.head < this.sentAt.length) {
      sent = this.sentAt[this.head++];
      if (this.head > 1024) {
        this.sentAt = this.sentAt.slice(this.head);
        this.head = 0;
      }
    }
    this.onReply(this, now - sent, now, error);
  }
}

const ERROR_PREFIX = Buffer.from('{"type":"error"');
function isError(data) {
  return Buffer.isBuffer(data) && data.subarray(0, ERROR_PREFIX.length).equals(ERROR_PREFIX);
}

// --- worker ------------------------------------------------------------------------------

async function openAll(cfg, indexes, onReply, progress) {
  const clients = [];
  let failed = 0;
  let firstError = null;
  let next = 0;
  const limit = Math.max(1, cfg.concurrency || 200);
  async function lane() {
    while (next < indexes.length) {
      const i = indexes[next++];
      try {
        clients.push(await new Client(cfg, i, onReply).open());
      } catch (err) {
        failed += 1;
        if (firstError === null) firstError = String(err && err.message ? err.message : err);
      }
      if ((clients.length + failed) % 1000 === 0) progress(clients.length, failed);
    }
  }
  await Promise.all(Array.from({ length: limit }, lane));
  return { clients, failed, firstError };
}

async function workerMain() {
  const cfg = workerData.cfg;
  const indexes = workerData.indexes;
  let measuring = false;
  let running = false;
  let samples = [];
  let count = 0;
  let errors = 0;
  let round = 0;
  let roundCount = 0;
  let roundFirst = 0;
  let roundLast = 0;
  let clients = [];

  const onReply = (client, latency, now, error) => {
    if (cfg.mode === "hold") {
      if (roundCount === 0) roundFirst = now;
      roundCount += 1;
      roundLast = now;
      if (roundCount === clients.length) {
        round += 1;
        roundCount = 0;
        const origin = performance.timeOrigin;
        parentPort.postMessage({
          type: "round",
          round,
          first: origin + roundFirst,
          last: origin + roundLast,
        });
      }
      return;
    }
    if (measuring) {
      if (error) errors += 1;
      else {
        samples.push(latency);
        count += 1;
      }
    }
    if (running && cfg.rate <= 0) client.send();
  };

  const opened = await openAll(cfg, indexes, onReply, (ok, failed) =>
    parentPort.postMessage({ type: "progress", ok, failed }),
  );
  clients = opened.clients;
  parentPort.postMessage({
    type: "connected",
    ok: clients.length,
    failed: opened.failed,
    error: opened.firstError,
  });

  let timer = null;
  parentPort.on("message", (m) => {
    if (m.type === "go") {
      running = true;
      if (cfg.rate > 0) {
        const perMs = cfg.rate / workerData.workers / 1000;
        const t0 = performance.now();
        let sent = 0;
        let rr = 0;
        const tick = () => {
          if (!running) return;
          const due = Math.floor((performance.now() - t0) * perMs) - sent;
          for (let k = 0; k < due; k++) {
            clients[rr].send();
            rr = (rr + 1) % clients.length;
          }
          sent += Math.max(0, due);
          timer = setTimeout(tick, 1);
        };
        tick();
      } else {
        for (const c of clients) for (let k = 0; k < cfg.window; k++) c.send();
      }
    } else if (m.type === "measure") {
      samples = [];
      count = 0;
      measuring = true;
    } else if (m.type === "stop") {
      measuring = false;
      running = false;
      if (timer) clearTimeout(timer);
      parentPort.postMessage({ type: "result", count, errors, samples: Float64Array.from(samples) });
    } else if (m.type === "quit") {
      for (const c of clients) c.ws.terminate();
      process.exit(0);
    }
  });
}

// --- main --------------------------------------------------------------------------------

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  cfg.rate = cfg.rate || 0;
  cfg.window = cfg.window || 1;
  cfg.payload = cfg.payload ?? 64;
  const nWorkers = Math.max(1, Math.min(cfg.workers || 1, cfg.clients));
  const workers = [];
  for (let w = 0; w < nWorkers; w++) {
    const indexes = [];
    for (let i = w; i < cfg.clients; i += nWorkers) indexes.push(i);
    workers.push(
      new Worker(new URL(import.meta.url), { workerData: { cfg, indexes, workers: nWorkers } }),
    );
  }
  const waitAll = (type) =>
    Promise.all(
      workers.map(
        (w) =>
          new Promise((resolve) => {
            const h = (m) => {
              if (m.type === type) {
                w.off("message", h);
                resolve(m);
              }
            };
            w.on("message", h);
          }),
      ),
    );
  const connected = await waitAll("connected");
  const ok = connected.reduce((a, m) => a + m.ok, 0);
  const failed = connected.reduce((a, m) => a + m.failed, 0);
  const error = connected.map((m) => m.error).find((e) => e) || null;

  if (cfg.mode === "hold") {
    let pending = new Map();
    for (const w of workers) {
      w.on("message", (m) => {
        if (m.type !== "round") return;
        const entry = pending.get(m.round) || { n: 0, first: Infinity, last: 0 };
        entry.n += 1;
        entry.first = Math.min(entry.first, m.first);
        entry.last = Math.max(entry.last, m.last);
        pending.set(m.round, entry);
        if (entry.n === workers.length) {
          const { first, last } = entry;
          process.stdout.write(`ROUND ${m.round} ${first.toFixed(3)} ${last.toFixed(3)}\n`);
          pending.delete(m.round);
        }
      });
    }
    process.stdout.write(`CONNECTED ${JSON.stringify({ ok, failed, error })}\n`);
    const rl = createInterface({ input: process.stdin });
    for await (const line of rl) if (line.trim() === "quit") break;
    for (const w of workers) w.postMessage({ type: "quit" });
    process.exit(0);
  }

  if (failed > 0) {
    process.stderr.write(`${failed} connections failed: ${error}\n`);
    process.exit(2);
  }
  process.stdout.write("READY\n");
  for (const w of workers) w.postMessage({ type: "go" });
  await new Promise((r) => setTimeout(r, cfg.warmup_s * 1000));
  for (const w of workers) w.postMessage({ type: "measure" });
  const started = performance.now();
  process.stdout.write("START\n");
  await new Promise((r) => setTimeout(r, cfg.duration_s * 1000));
  const resultsP = waitAll("result");
  for (const w of workers) w.postMessage({ type: "stop" });
  const elapsed = (performance.now() - started) / 1000;
  const results = await resultsP;
  let total = 0;
  let errors = 0;
  let all = [];
  for (const r of results) {
    total += r.count;
    errors += r.errors;
    all.push(r.samples);
  }
  const merged = new Float64Array(all.reduce((a, s) => a + s.length, 0));
  let off = 0;
  for (const s of all) {
    merged.set(s, off);
    off += s.length;
  }
  merged.sort();
  const out = {
    count: total,
    errors,
    elapsed_s: elapsed,
    msgs_per_s: total / elapsed,
    p50_ms: percentile(merged, 50),
    p99_ms: percentile(merged, 99),
    p999_ms: percentile(merged, 99.9),
    max_ms: merged.length ? merged[merged.length - 1] : 0,
  };
  process.stdout.write(`END ${JSON.stringify(out)}\n`);
  for (const w of workers) w.postMessage({ type: "quit" });
  process.exit(0);
}

if (isMainThread) {
  main().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
  });
} else {
  workerMain().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
  });
}
