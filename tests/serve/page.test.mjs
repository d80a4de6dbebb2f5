// The chat page at / in a real browser: Debian's chromium, headless, driven by playwright-core. Type a message, see
// the reply stream in, see tokens/s, and keep a screenshot (ARTIFACT_DIR/chat_page.png). Without chromium the test
// fails under CI=true and is skipped, loudly, elsewhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import { startServer } from "./server.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ci = process.env.CI === "true";

test("chat page: a message gets a streamed reply in the browser", { skip: !existsSync(CHROMIUM) && !ci ? `SKIPPED: no browser at ${CHROMIUM} (apt-get install chromium)` : false }, async () => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: install Debian's chromium`);
  const s = await startServer(["--parallel", "2", "--alias", "tiny-moe"]);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(s.url + "/");
    await page.waitForFunction(() => document.getElementById("model").textContent.includes("tiny-moe"));
    await page.fill("#temperature", "0");
    await page.fill("#max_tokens", "24");
    await page.fill("#input", "What is 12 + 30?");
    await page.press("#input", "Enter");
    // The reply streams into the assistant bubble, then the stats line shows the speed.
    await page.waitForSelector(".msg.assistant[data-done]", { timeout: 30000 });
    const reply = await page.textContent(".msg.assistant");
    const stats = await page.textContent("#stats");
    assert.ok(reply.length > 0, "the reply is not empty");
    assert.match(stats, /tokens\/s/);
    assert.equal(await page.textContent(".msg.user"), "What is 12 + 30?");
    // The same reply as the API gives for the same conversation and settings.
    const api = await (await fetch(s.url + "/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "What is 12 + 30?" }], temperature: 0, max_tokens: 24, top_k: 40, top_p: 0.95, min_p: 0.05 }),
    })).json();
    assert.equal(reply, api.choices[0].message.content);
    const dir = process.env.ARTIFACT_DIR ?? ".";
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: `${dir}/chat_page.png` });
    console.log(`reply ${JSON.stringify(reply)}; ${stats}; screenshot ${dir}/chat_page.png`);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await s.stop();
  }
});
