// dsmoe serve through the official openai SDK (the newest major that runs on Node 20), greedy unless a test says
// otherwise: models, chat and completions streamed and not, usage only when asked, equality with `dsmoe generate`,
// stop strings, seeds, 4 concurrent streams equal to their results alone, cached prompt tokens in a multi-turn
// conversation, logprobs, max_completion_tokens, context_length_exceeded.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, generateText } from "./server.mjs";

let server, client;
before(async () => {
  server = await startServer(["--parallel", "4", "--alias", "tiny-moe"]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });
});
after(async () => {
  assert.equal(await server.stop("SIGINT"), 0, "SIGINT ends the server with status 0");
});

const greedy = { temperature: 0, max_tokens: 24 };
const chatOf = (text) => [{ role: "user", content: text }];

async function collect(stream) {
  let text = "", usage = null, finish = null, chunks = 0, usageChunks = 0, role = null;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) {
      usage = chunk.usage;
      usageChunks += 1;
      assert.deepEqual(chunk.choices, [], "the usage chunk has no choices");
      continue;
    }
    const c = chunk.choices[0];
    if (c.delta) {
      if (c.delta.role) role = c.delta.role;
      text += c.delta.content ?? "";
    } else {
      text += c.text ?? "";
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { text, usage, finish, chunks, usageChunks, role };
}

test("models lists the alias with its context length", async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  assert.equal(list.data[0].id, "tiny-moe");
  assert.equal(list.data[0].context_length, 256);
});

test("completions: streamed == not streamed == dsmoe generate (greedy)", async () => {
  const prompt = "The number";
  const whole = await client.completions.create({ model: "tiny-moe", prompt, ...greedy });
  const streamed = await collect(await client.completions.create({ model: "tiny-moe", prompt, ...greedy, stream: true }));
  assert.ok(whole.choices[0].text.length > 0);
  assert.equal(streamed.text, whole.choices[0].text);
  assert.equal(streamed.finish, whole.choices[0].finish_reason);
  assert.equal(whole.choices[0].text, generateText(prompt, 24));
  assert.equal(whole.usage.completion_tokens + whole.usage.prompt_tokens, whole.usage.total_tokens);
});

test("chat: streamed == not streamed; usage only when asked", async () => {
  const messages = chatOf("What is 2 + 3?");
  const whole = await client.chat.completions.create({ model: "tiny-moe", messages, ...greedy });
  assert.equal(whole.object, "chat.completion");
  assert.equal(whole.choices[0].message.role, "assistant");
  const plain = await collect(await client.chat.completions.create({ model: "tiny-moe", messages, ...greedy, stream: true }));
  assert.equal(plain.text, whole.choices[0].message.content);
  assert.equal(plain.role, "assistant");
  assert.equal(plain.usageChunks, 0, "no usage chunk unless stream_options.include_usage");
  const withUsage = await collect(await client.chat.completions.create({
    model: "tiny-moe", messages, ...greedy, stream: true, stream_options: { include_usage: true } }));
  assert.equal(withUsage.text, whole.choices[0].message.content);
  assert.equal(withUsage.usageChunks, 1);
  assert.equal(withUsage.usage.completion_tokens, whole.usage.completion_tokens);
  assert.equal(withUsage.usage.prompt_tokens, whole.usage.prompt_tokens);
});

test("stop strings cut the text before the stop string", async () => {
  const prompt = "The number";
  const full = (await client.completions.create({ model: "tiny-moe", prompt, temperature: 0, max_tokens: 40 })).choices[0].text;
  assert.ok(full.length >= 8, `greedy text too short to pick a stop string: ${JSON.stringify(full)}`);
  const stop = full.slice(4, 6);
  const cut = full.slice(0, full.indexOf(stop));
  for (const stream of [false, true]) {
    const r = await client.completions.create({ model: "tiny-moe", prompt, temperature: 0, max_tokens: 40, stop: [stop], stream });
    const got = stream ? await collect(r) : { text: r.choices[0].text, finish: r.choices[0].finish_reason };
    assert.equal(got.text, cut, `stop ${JSON.stringify(stop)} (stream ${stream})`);
    assert.equal(got.finish, "stop");
  }
});

test("the same seed gives the same sampled text", async () => {
  const req = { model: "tiny-moe", messages: chatOf("Tell me a story"), temperature: 1.0, top_p: 1, max_tokens: 24, seed: 42 };
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create(req);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test("4 concurrent streams each equal their results alone", async () => {
  const prompts = ["The number 1", "Once upon a time", "In the beginning", "What is 7 + 8?"];
  const alone = [];
  for (const p of prompts) alone.push((await client.completions.create({ model: "tiny-moe", prompt: p, temperature: 0, max_tokens: 32 })).choices[0].text);
  const together = await Promise.all(prompts.map(async (p) =>
    (await collect(await client.completions.create({ model: "tiny-moe", prompt: p, temperature: 0, max_tokens: 32, stream: true }))).text));
  assert.deepEqual(together, alone);
});

test("a multi-turn conversation reports cached prompt tokens", async () => {
  const turn1 = chatOf("What is 12 + 30?");
  const r1 = await client.chat.completions.create({ model: "tiny-moe", messages: turn1, ...greedy });
  const turn2 = [...turn1, { role: "assistant", content: r1.choices[0].message.content }, { role: "user", content: "And 40 + 2?" }];
  const r2 = await client.chat.completions.create({ model: "tiny-moe", messages: turn2, ...greedy });
  assert.ok(r2.usage.prompt_tokens_details.cached_tokens >= r1.usage.prompt_tokens,
    `cached ${r2.usage.prompt_tokens_details.cached_tokens} of ${r2.usage.prompt_tokens} (turn 1: ${r1.usage.prompt_tokens})`);
  assert.ok(r2.usage.prompt_tokens_details.cached_tokens < r2.usage.prompt_tokens);
});

test("logprobs: one entry per token, the greedy choice the most likely", async () => {
  const r = await client.chat.completions.create({ model: "tiny-moe", messages: chatOf("Hi"), temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 3 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(t.logprob <= 0);
    assert.ok(Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-9, "greedy picks the top token");
    assert.deepEqual(Buffer.from(t.bytes).toString("utf8").length >= 0, true);
  }
  const c = await client.completions.create({ model: "tiny-moe", prompt: "The", temperature: 0, max_tokens: 5, logprobs: 2 });
  assert.equal(c.choices[0].logprobs.tokens.length, c.usage.completion_tokens);
  assert.equal(c.choices[0].logprobs.top_logprobs[0] && Object.keys(c.choices[0].logprobs.top_logprobs[0]).length <= 2, true);
});

test("max_completion_tokens is honoured; max_tokens beyond the context is capped", async () => {
  const r = await client.chat.completions.create({ model: "tiny-moe", messages: chatOf("Count"), temperature: 0, max_completion_tokens: 5 });
  assert.ok(r.usage.completion_tokens <= 5);
  if (r.usage.completion_tokens === 5) assert.equal(r.choices[0].finish_reason, "length");
  const long = await client.completions.create({ model: "tiny-moe", prompt: "The number", temperature: 0, max_tokens: 100000 });
  assert.ok(long.usage.prompt_tokens + long.usage.completion_tokens <= 256);
});

test("a prompt longer than the context is a 400 context_length_exceeded", async () => {
  const prompt = "word ".repeat(400);
  await assert.rejects(client.completions.create({ model: "tiny-moe", prompt, max_tokens: 4 }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.code, "context_length_exceeded");
    return true;
  });
});

test("response_format json_schema: 50 samples at temperature 1 all parse and validate", async () => {
  const schema = {
    type: "object",
    properties: {
      name: { type: "string" },
      age: { type: "integer" },
      score: { type: "number" },
      colour: { type: "string", enum: ["red", "green", "blue"] },
      tags: { type: "array", items: { type: "string" } },
      ok: { type: "boolean" },
    },
    required: ["name", "age", "colour"],
  };
  const valid = (v) => v && typeof v === "object" && !Array.isArray(v) && typeof v.name === "string" &&
    Number.isInteger(v.age) && ["red", "green", "blue"].includes(v.colour) &&
    Object.keys(v).every((k) => k in schema.properties) &&
    (v.score === undefined || typeof v.score === "number") && (v.ok === undefined || typeof v.ok === "boolean") &&
    (v.tags === undefined || (Array.isArray(v.tags) && v.tags.every((t) => typeof t === "string")));
  const jobs = [];
  for (let i = 0; i < 50; ++i) {
    jobs.push(client.chat.completions.create({
      model: "tiny-moe", messages: chatOf("Describe a person as JSON"), temperature: 1, top_p: 1, top_k: 0, min_p: 0,
      seed: 1000 + i, max_tokens: 2000,
      response_format: { type: "json_schema", json_schema: { name: "person", schema } },
    }));
  }
  for (const r of await Promise.all(jobs)) {
    const text = r.choices[0].message.content;
    let v;
    assert.doesNotThrow(() => { v = JSON.parse(text); }, `not JSON: ${text}`);
    assert.ok(valid(v), `does not validate: ${text}`);
    assert.equal(r.choices[0].finish_reason, "stop");
    assert.deepEqual(Object.keys(v).filter((k) => ["name", "age"].includes(k)), ["name", "age"], "schema order");
  }
});

test("response_format json_object: 50 samples at temperature 1 are JSON objects", async () => {
  const jobs = [];
  for (let i = 0; i < 50; ++i) {
    jobs.push(client.chat.completions.create({
      model: "tiny-moe", messages: chatOf("Answer in JSON"), temperature: 1, top_p: 1, top_k: 0, min_p: 0,
      seed: 2000 + i, max_tokens: 4000, response_format: { type: "json_object" },
    }));
  }
  for (const r of await Promise.all(jobs)) {
    const text = r.choices[0].message.content;
    let v;
    assert.doesNotThrow(() => { v = JSON.parse(text); }, `not JSON: ${text}`);
    assert.ok(v && typeof v === "object" && !Array.isArray(v), text);
  }
});
