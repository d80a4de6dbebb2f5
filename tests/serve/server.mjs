// Starts `dsmoe serve` on a free loopback port (--port 0: the server prints the one it got) and waits until
// /health answers 200. Environment: DSMOE_BIN (the binary), MODEL (a small GGUF with tokenizer metadata).
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export const DSMOE = process.env.DSMOE_BIN;
export const MODEL = process.env.MODEL;
export const LONG_MODEL = process.env.LONG_MODEL;
if (!DSMOE || !MODEL) throw new Error("set DSMOE_BIN and MODEL");

export async function startServer(args = [], { model = MODEL, threads = "2" } = {}) {
  const proc = spawn(DSMOE, ["-t", threads, "serve", "--model", model, "--port", "0", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start: " + stderr)), 30000);
    proc.stderr.on("data", (d) => {
      stderr += d.toString();
      const m = stderr.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on("exit", (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; ++i) {
    try {
      const r = await fetch(url + "/health");
      if (r.status === 200) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  const server = {
    proc,
    port,
    url,
    stderr: () => stderr,
    rssKb: () => Number(readFileSync(`/proc/${proc.pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]),
    async stop(signal = "SIGTERM") {
      if (proc.exitCode !== null) return proc.exitCode;
      const done = new Promise((resolve) => proc.on("exit", (code, sig) => resolve(code ?? sig)));
      proc.kill(signal);
      return done;
    },
  };
  return server;
}

// `dsmoe generate` on the same model, greedy: the text the server's greedy completions must equal.
export function generateText(prompt, n) {
  const out = execFileSync(DSMOE, ["generate", "--model", MODEL, "--prompt", prompt, "-n", String(n), "--temperature", "0"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  return out.toString("utf8").replace(/\n$/, "");
}

// POST JSON, returning {status, headers, body (parsed when JSON), text}.
export async function post(url, body, headers = {}) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, headers: r.headers, body: json, text };
}
