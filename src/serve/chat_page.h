// The chat page `dsmoe serve` answers at GET /: one static HTML file with its script inline (no build step, nothing
// downloaded), talking to /v1/chat/completions with streaming. Conversation view, streamed tokens, a stop button
// (aborts the request: the server cancels the job), sampling settings, an API key field, tokens per second.
#pragma once

namespace dsmoe::serve {

inline constexpr const char* kChatPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dsmoe chat</title>
<style>
  :root { --fg: #1d1d1f; --muted: #6e6e73; --line: #d2d2d7; --user: #e8f0fe; --bot: #f5f5f7; --accent: #0b57d0; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); display: flex; height: 100vh; }
  main { flex: 1; display: flex; flex-direction: column; min-width: 0; }
  header { padding: 10px 16px; border-bottom: 1px solid var(--line); display: flex; gap: 12px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  #model, #stats { color: var(--muted); font-size: 13px; }
  #log { flex: 1; overflow-y: auto; padding: 16px; display: flex; flex-direction: column; gap: 10px; }
  .msg { max-width: 80%; padding: 8px 12px; border-radius: 10px; white-space: pre-wrap; word-wrap: break-word; }
  .user { align-self: flex-end; background: var(--user); }
  .assistant { align-self: flex-start; background: var(--bot); }
  .error { align-self: center; color: #b3261e; font-size: 13px; }
  form { display: flex; gap: 8px; padding: 12px 16px; border-top: 1px solid var(--line); }
  textarea { flex: 1; resize: none; height: 48px; font: inherit; padding: 8px; border: 1px solid var(--line); border-radius: 8px; }
  button { font: inherit; padding: 0 16px; border-radius: 8px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
  button.secondary { background: #fff; color: var(--accent); }
  button:disabled { opacity: .4; cursor: default; }
  aside { width: 230px; border-left: 1px solid var(--line); padding: 12px 16px; font-size: 13px; overflow-y: auto; }
  aside label { display: block; margin: 10px 0 2px; color: var(--muted); }
  aside input { width: 100%; font: inherit; padding: 4px 6px; border: 1px solid var(--line); border-radius: 6px; }
</style>
</head>
<body>
<main>
  <header><h1>dsmoe chat</h1><span id="model"></span><span id="stats"></span></header>
  <div id="log"></div>
  <form id="form">
    <textarea id="input" placeholder="Message (Enter sends, Shift+Enter: new line)"></textarea>
    <button id="send" type="submit">Send</button>
    <button id="stop" type="button" class="secondary" disabled>Stop</button>
    <button id="clear" type="button" class="secondary">New chat</button>
  </form>
</main>
<aside>
  <b>Sampling</b>
  <label for="temperature">temperature</label><input id="temperature" type="number" step="0.05" min="0" max="2" value="0.8">
  <label for="top_p">top_p</label><input id="top_p" type="number" step="0.01" min="0.01" max="1" value="0.95">
  <label for="top_k">top_k</label><input id="top_k" type="number" step="1" min="0" value="40">
  <label for="min_p">min_p</label><input id="min_p" type="number" step="0.01" min="0" max="1" value="0.05">
  <label for="max_tokens">max_tokens</label><input id="max_tokens" type="number" step="1" min="1" value="512">
  <label for="seed">seed (empty: random)</label><input id="seed" type="number" step="1" min="0">
  <label for="api_key">API key (if the server has one)</label><input id="api_key" type="password">
</aside>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const messages = [];
let controller = null;

function add(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}
function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("api_key").value) h["Authorization"] = "Bearer " + $("api_key").value;
  return h;
}
function settings() {
  const s = {};
  for (const k of ["temperature", "top_p", "min_p"]) s[k] = parseFloat($(k).value);
  for (const k of ["top_k", "max_tokens"]) s[k] = parseInt($(k).value, 10);
  if ($("seed").value !== "") s.seed = parseInt($("seed").value, 10);
  return s;
}
function busy(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
}

async function send(text) {
  messages.push({ role: "user", content: text });
  add("user", text);
  const out = add("assistant", "");
  out.dataset.streaming = "1";
  controller = new AbortController();
  busy(true);
  const started = performance.now();
  let first = 0, pieces = 0, reply = "", usage = null;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({ messages, stream: true, stream_options: { include_usage: true }, ...settings() }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || ("HTTP " + res.status));
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (!first) first = performance.now();
          reply += delta.content;
          pieces += 1;
          out.textContent = reply;
          $("log").scrollTop = $("log").scrollHeight;
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") add("error", "error: " + e.message);
  } finally {
    messages.push({ role: "assistant", content: reply });
    const end = performance.now();
    const tokens = usage ? usage.completion_tokens : pieces;
    const secs = first ? (end - first) / 1000 : 0;
    $("stats").textContent = tokens + " tokens" + (secs > 0 ? ", " + (tokens / secs).toFixed(1) + " tokens/s" : "") +
      (first ? ", first token after " + ((first - started) / 1000).toFixed(2) + " s" : "") +
      (usage ? ", " + usage.prompt_tokens_details.cached_tokens + " of " + usage.prompt_tokens + " prompt tokens cached" : "");
    delete out.dataset.streaming;
    out.dataset.done = "1";
    controller = null;
    busy(false);
  }
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
});
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("clear").addEventListener("click", () => { if (controller) controller.abort(); messages.length = 0; $("log").innerHTML = ""; });
fetch("/v1/models", { headers: headers() }).then((r) => r.json()).then((m) => {
  if (m.data && m.data[0]) $("model").textContent = m.data[0].id + " · context " + m.data[0].context_length;
}).catch(() => {});
</script>
</body>
</html>
)HTML";

}  // namespace dsmoe::serve
