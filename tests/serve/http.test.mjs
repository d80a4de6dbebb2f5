// dsmoe serve over raw HTTP (no SDK): each client error with its status and OpenAI's error body, the API key,
// 1,000 malformed requests (the server stays up, answers 4xx or closes, and its memory does not grow), clients that
// hang up mid-stream or mid-request (their slot is freed at once), /tokenize and /detokenize, /metrics, and a
// clean exit on SIGTERM.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, post, LONG_MODEL, DSMOE, MODEL } from "./server.mjs";

// Sends raw bytes on a fresh connection; resolves with whatever came back before the server closed or `ms` passed.
function raw(port, bytes, ms = 2000) {
  return new Promise((resolve) => {
    const chunks = [];
    const sock = net.connect(port, "127.0.0.1");
    const timer = setTimeout(() => { sock.destroy(); resolve(Buffer.concat(chunks).toString("latin1")); }, ms);
    // Done when the server closes, or once a whole response (head + Content-Length bytes) is in: an error answered
    // on a kept-alive connection need not wait for the keep-alive timeout.
    sock.on("data", (d) => {
      chunks.push(d);
      const text = Buffer.concat(chunks).toString("latin1");
      const head = text.indexOf("\r\n\r\n");
      const len = text.match(/\r\ncontent-length: (\d+)/i);
      if (head >= 0 && len && text.length >= head + 4 + Number(len[1])) sock.destroy();
    });
    sock.on("error", () => {});
    sock.on("close", () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString("latin1")); });
    sock.on("connect", () => { sock.write(bytes); });
  });
}
const statusOf = (response) => { const m = response.match(/^HTTP\/1\.1 (\d{3})/); return m ? Number(m[1]) : 0; };

function assertError(r, status, param) {
  assert.equal(r.status, status, r.text);
  assert.equal(typeof r.body.error.message, "string");
  assert.ok(r.body.error.message.length > 0);
  assert.ok("type" in r.body.error && "param" in r.body.error && "code" in r.body.error, r.text);
  if (param !== undefined) assert.equal(r.body.error.param, param, r.text);
}

test("client errors: status and OpenAI error body", async () => {
  const s = await startServer(["--max-body", "4096"]);
  try {
    const chat = s.url + "/v1/chat/completions";
    const msgs = [{ role: "user", content: "hi" }];
    assertError(await post(chat, "{not json"), 400);
    assertError(await post(chat, "[1,2]"), 400);
    assertError(await post(chat, {}), 400, "messages");
    assertError(await post(chat, { messages: "hi" }), 400, "messages");
    assertError(await post(chat, { messages: [] }), 400, "messages");
    assertError(await post(chat, { messages: [{ role: "wizard", content: "x" }] }), 400, "messages[0].role");
    assertError(await post(chat, { messages: [{ role: "user", content: 5 }] }), 400, "messages[0].content");
    assertError(await post(chat, { messages: msgs, temperature: "hot" }), 400, "temperature");
    assertError(await post(chat, { messages: msgs, temperature: 7 }), 400, "temperature");
    assertError(await post(chat, { messages: msgs, max_tokens: -3 }), 400, "max_tokens");
    assertError(await post(chat, { messages: msgs, max_tokens: 1e30 }), 400, "max_tokens");
    assertError(await post(chat, { messages: msgs, max_completion_tokens: 0 }), 400, "max_completion_tokens");
    assertError(await post(chat, { messages: msgs, n: 2 }), 400, "n");
    assertError(await post(chat, { messages: msgs, stop: [1] }), 400, "stop");
    assertError(await post(chat, { messages: msgs, stream_options: { include_usage: true } }), 400, "stream_options");
    assertError(await post(chat, { messages: msgs, top_logprobs: 2 }), 400, "top_logprobs");
    assertError(await post(chat, { messages: msgs, response_format: { type: "json_schema" } }), 400, "response_format");
    assertError(await post(s.url + "/v1/completions", { prompt: [1, -5] }), 400, "prompt");
    assertError(await post(s.url + "/v1/completions", { prompt: [1, 99999999] }), 400, "prompt");
    assertError(await post(s.url + "/v1/completions", { prompt: ["a", "b"] }), 400, "prompt");
    assertError(await post(s.url + "/detokenize", { tokens: [1e12] }), 400, "tokens");
    const notFound = await post(s.url + "/v1/nothing", {});
    assertError(notFound, 404);
    const wrongMethod = await fetch(chat);  // GET on a POST route
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get("allow"), "POST");
    assert.ok((await wrongMethod.json()).error.message.includes("not allowed"));
    assertError(await post(chat, { messages: [{ role: "user", content: "x".repeat(5000) }] }), 413);
    // Still serving after all that.
    const ok = await post(chat, { messages: msgs, max_tokens: 2 });
    assert.equal(ok.status, 200);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test("API key: 401 without or with a wrong one; /health open", async () => {
  const s = await startServer(["--api-key", "sekret"]);
  try {
    const body = { prompt: "The", max_tokens: 2 };
    assertError(await post(s.url + "/v1/completions", body), 401);
    assertError(await post(s.url + "/v1/completions", body, { Authorization: "Bearer nope" }), 401);
    assert.equal((await fetch(s.url + "/v1/models")).status, 401);
    assert.equal((await fetch(s.url + "/health")).status, 200);
    assert.equal((await post(s.url + "/v1/completions", body, { Authorization: "Bearer sekret" })).status, 200);
  } finally {
    await s.stop();
  }
});

test("tokenize / detokenize round trip; metrics", async () => {
  const s = await startServer();
  try {
    const text = "Hello wörld 12345 ✓";
    const t = await post(s.url + "/tokenize", { content: text });
    assert.equal(t.status, 200);
    assert.ok(t.body.tokens.length > 0);
    const d = await post(s.url + "/detokenize", { tokens: t.body.tokens });
    assert.equal(d.body.content, text);
    const p = await post(s.url + "/tokenize", { content: "✓", with_pieces: true });
    assert.ok(p.body.tokens.every((x) => typeof x.id === "number" && (typeof x.piece === "string" || Array.isArray(x.piece))));
    await post(s.url + "/v1/completions", { prompt: "The", max_tokens: 3, temperature: 0 });
    const m = await (await fetch(s.url + "/metrics")).text();
    for (const name of ["prompt_tokens_total", "tokens_predicted_total", "requests_processing", "requests_deferred", "kv_cache_usage_ratio"])
      assert.match(m, new RegExp(`^dsmoe:${name} [0-9.e+-]+$`, "m"), name);
    assert.match(m, /^dsmoe:tokens_predicted_total [1-9]/m);
  } finally {
    await s.stop();
  }
});

test("1,000 malformed requests: 4xx or a closed connection, the server stays up, memory stays flat", async () => {
  const s = await startServer(["--max-body", "65536", "--timeout", "1"]);
  try {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const bytes = (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
    const req = (body, extra = "") =>
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body, "latin1")}\r\nConnection: close\r\n\r\n${body}`;
    const kinds = [
      () => bytes(1 + Math.floor(rand() * 300)),                                                  // random bytes
      () => req('{"messages": [{"role": "user", "content": "hi"}]', ""),                         // truncated JSON
      () => `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{"prompt": "tr`, // body shorter than announced
      () => `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20000)}\r\nConnection: close\r\n\r\n`, // huge header
      () => req('{"messages": [{"role": "user", "content": "\xff\xfe bad utf-8"}], "max_tokens": 2}'), // bad UTF-8
      () => req("[".repeat(5000) + "]".repeat(5000)),                                            // deep nesting
      () => req('{"a":' + "{".repeat(100) + "}".repeat(100) + "}"),                             // deeper than 64
      () => req(`{"messages": [{"role": "user", "content": "x"}], "max_tokens": ${rand() < 0.5 ? -1e300 : 1e300}}`), // huge numbers
      () => req(`{"messages": [{"role": "user", "content": "x"}], "temperature": -${1 + Math.floor(rand() * 100)}, "seed": -1}`),
      () => req(`{"prompt": [${Array.from({ length: 20 }, () => Math.floor(rand() * 4e9) - 2e9).join(",")}]}`.replace("chat/", "")),
      () => `BREW /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,     // unknown method
      () => req('{"messages": [{"role": "user", "content": "' + "x".repeat(70000) + '"}]}'),    // over --max-body
    ];
    // Warm up (first requests allocate the engine's buffers), then measure.
    for (let i = 0; i < 20; ++i) await raw(s.port, kinds[i % kinds.length]());
    const rss0 = s.rssKb();
    const counts = {};
    const N = 1000;
    // 32 connections in flight at a time (requests that stall cost the server's read timeout, not the others').
    let next = 0;
    const worker = async () => {
      for (let j = next++; j < N; j = next++) {
        // A body shorter than announced costs the read timeout: one round in four.
        let k = j % kinds.length;
        if (k === 2 && Math.floor(j / kinds.length) % 4 !== 0) k = 0;
        const resp = await raw(s.port, kinds[k](), 5000);
        const st = statusOf(resp);
        counts[st] = (counts[st] ?? 0) + 1;
        assert.ok(st === 0 || (st >= 400 && st < 500), `kind ${k}: status ${st}: ${resp.slice(0, 200)}`);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const health = await fetch(s.url + "/health");
    assert.equal(health.status, 200);
    const grown = s.rssKb() - rss0;
    console.log(`statuses ${JSON.stringify(counts)}; RSS grew ${grown} kB`);
    assert.ok(grown < 50 * 1024, `RSS grew ${grown} kB`);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test("a client that hangs up frees its slot within a step (streaming and not)", async () => {
  // One slot, a model with 8,192 positions: an abandoned generation would hold the slot for seconds.
  const s = await startServer(["--parallel", "1", "--ctx", "8192"], { model: LONG_MODEL });
  try {
    const quick = { prompt: "The", max_tokens: 4, temperature: 0 };
    const t0 = performance.now();
    await post(s.url + "/v1/completions", quick);
    const alone = performance.now() - t0;
    // The request abandoned below runs to the end of the context unless cancelled: time it once, whole, so that the
    // test shows a hang-up is honoured rather than outwaited.
    const full = { prompt: "The", temperature: 0, ignore_eos: true };
    const t1 = performance.now();
    const whole = await post(s.url + "/v1/completions", full);
    const fullMs = performance.now() - t1;
    assert.equal(whole.body.usage.completion_tokens, 8192 - whole.body.usage.prompt_tokens);
    assert.ok(fullMs > 1000, `a full-context generation took only ${fullMs.toFixed(0)} ms: too fast to tell`);
    const limit = Math.min(fullMs / 4, 1000);
    for (const stream of [true, false]) {
      const body = JSON.stringify({ ...full, stream });
      const sock = net.connect(s.port, "127.0.0.1");
      sock.on("error", () => {});
      sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      if (stream) await new Promise((resolve) => sock.once("data", resolve));  // the stream has started
      else await new Promise((resolve) => setTimeout(resolve, 300));
      sock.destroy();
      const t2 = performance.now();
      const r = await post(s.url + "/v1/completions", quick);
      const waited = performance.now() - t2;
      assert.equal(r.status, 200);
      console.log(`after a hang-up (stream ${stream}): next request took ${waited.toFixed(0)} ms (alone ${alone.toFixed(0)} ms; ` +
        `the abandoned generation would take ${fullMs.toFixed(0)} ms)`);
      assert.ok(waited < limit, `the next request waited ${waited.toFixed(0)} ms: the abandoned job kept the slot`);
      const m = await (await fetch(s.url + "/metrics")).text();
      assert.match(m, /^dsmoe:requests_processing 0$/m);
    }
  } finally {
    await s.stop();
  }
});

test("/health is 503 while the model loads (the listener starts first), then 200", async () => {
  // The tokenizer file is a FIFO: loading blocks on it until the test writes the real file into it, so the
  // "still loading" window lasts exactly as long as the test wants.
  const dir = mkdtempSync(join(tmpdir(), "dsmoe-fifo-"));
  execFileSync("mkfifo", [join(dir, "tokenizer.json")]);
  const proc = spawn(DSMOE, ["serve", "--model", MODEL, "--tokenizer", dir, "--port", "0"], { stdio: ["ignore", "ignore", "pipe"] });
  try {
    let stderr = "";
    const port = await new Promise((resolve, reject) => {
      proc.stderr.on("data", (d) => {
        stderr += d.toString();
        const m = stderr.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
        if (m) resolve(Number(m[1]));
      });
      proc.on("exit", (code) => reject(new Error(`exited ${code}: ${stderr}`)));
    });
    const url = `http://127.0.0.1:${port}`;
    for (const route of ["/health", "/v1/models"]) {
      const r = await fetch(url + route);
      assert.equal(r.status, 503, route);
      const body = await r.json();
      assert.equal(body.error.type, "unavailable_error");
    }
    const chat = await post(url + "/v1/chat/completions", { messages: [{ role: "user", content: "hi" }] });
    assert.equal(chat.status, 503);
    writeFileSync(join(dir, "tokenizer.json"), readFileSync(process.env.TOKENIZER_JSON));  // loading goes on
    let status = 0;
    for (let i = 0; i < 200 && status !== 200; ++i) {
      status = (await fetch(url + "/health")).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200);
    assert.equal((await post(url + "/v1/completions", { prompt: "The", max_tokens: 2 })).status, 200);
  } finally {
    proc.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
});
