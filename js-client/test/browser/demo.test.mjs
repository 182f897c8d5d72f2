// End to end in headless Chromium: the demo page served by the agent, the built browser bundle,
// signatures read from the page and verified with openssl; and a page from an origin the agent
// does not allow.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { JS_CLIENT, KEYS, PIN, freePort, provisionToken, readCert, startAgent, tempDir } from "../helpers/agent.mjs";
import { opensslVerify } from "../helpers/verify.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
// The README's screenshot is only rewritten on request (`npm run screenshot`), so that running the
// tests leaves the working tree clean.
const README_SCREENSHOT = join(JS_CLIENT, "demo-screenshot.png");
let screenshot;

let tmp;
let token;
let agent;
let context;
let pageErrors = [];

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN)`);
  assert.ok(existsSync(join(JS_CLIENT, "demo/keyport-client.js")), "run `npm run build` first (it emits demo/keyport-client.js)");
  tmp = await tempDir();
  screenshot = process.env.UPDATE_SCREENSHOT === "1" ? README_SCREENSHOT : join(tmp.dir, "demo-screenshot.png");
  token = await provisionToken(join(tmp.dir, "token"));
  const port = await freePort();
  agent = await startAgent({
    conf: token.conf,
    port,
    args: ["--demo", "--demo-dir", join(JS_CLIENT, "demo"), "--trust-origin", `http://127.0.0.1:${port}`],
  });
  assert.equal(agent.demoUrl, `http://127.0.0.1:${port}/demo`);
  context = await chromium.launchPersistentContext(join(tmp.dir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1100, height: 900 },
  });
});

after(async () => {
  await context?.close();
  await agent?.stop();
  await tmp?.cleanup();
});

async function openDemo(url = agent.demoUrl) {
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(url);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 20_000 });
  return page;
}

/** Sign `text` with certificate `certId` in the page; returns what the page shows. */
async function signInPage(page, certId, text, pin = PIN) {
  await page.check(`#cert-${certId}`);
  await page.fill("#text", text);
  await page.fill("#pin", pin);
  await page.click("#sign");
  await page.waitForSelector('#result[data-state="signed"], #result[data-state="error"]', { timeout: 20_000 });
  return {
    state: await page.getAttribute("#result", "data-state"),
    digest: (await page.textContent("#digest")).trim(),
    signature: (await page.textContent("#signature")).trim(),
    valid: await page.getAttribute("#verify-result", "data-valid"),
    error: await page.isVisible("#error") ? await page.textContent("#error") : null,
    reason: await page.getAttribute("#error", "data-reason"),
  };
}

describe("the demo page served by the agent", () => {
  let page;
  before(async () => {
    pageErrors = [];
    page = await openDemo();
  });
  after(async () => {
    await page?.close();
  });

  test("connects and lists slots, tokens and parsed certificates", async () => {
    assert.equal(await page.getAttribute("#status", "data-state"), "ready", await page.textContent("#error"));
    const table = await page.textContent("#slots");
    assert.match(table, /keyport-demo/);
    assert.match(table, /keyport-empty/);
    const selected = await page.$eval("#token-select", (s) => s.options[s.selectedIndex].textContent);
    assert.match(selected, /^keyport-demo/);
    assert.equal(await page.getAttribute("#certs", "data-state"), "ready");
    const certs = await page.textContent("#certs");
    for (const key of KEYS) assert.match(certs, new RegExp(key.cn));
    assert.match(certs, /Key: RSA 2048/);
    assert.match(certs, /Key: EC P-256/);
    assert.match(certs, /Key: EC P-384/);
    assert.match(certs, /Key: EC P-521/);
    assert.match(certs, /Issuer: .*O=Keyport Demo/);
    assert.match(certs, /Valid: \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d/);
    assert.equal(await page.locator('#certs input[name="cert"]').count(), KEYS.length + 1); // and the orphan
    assert.deepEqual(pageErrors, []);
  });

  for (const key of KEYS) {
    test(`signs with ${key.cn}; openssl verifies the signature shown in the page`, async () => {
      const text = key.id === "01" ? "I agree to the terms." : `Signed in Chromium with ${key.cn} at ${new Date().toISOString()}`;
      const shown = await signInPage(page, key.id, text);
      assert.equal(shown.state, "signed", shown.error ?? "");
      const digest = createHash("sha256").update(text).digest();
      assert.equal(shown.digest, digest.toString("base64"), "the page hashed the text with WebCrypto");
      const signature = Buffer.from(shown.signature, "base64");
      assert.ok(signature.length > 0);
      const ok = await opensslVerify({
        certDer: await readCert(token.certsDir, key),
        digest,
        signature,
        algorithm: "sha256",
      });
      assert.equal(ok, true, "openssl verifies the page's signature");
      assert.equal(shown.valid, "true", "the page shows the agent's verification");
      if (key.id === "01") {
        await page.fill("#pin", ""); // the screenshot shows no PIN dots
        await page.screenshot({ path: screenshot, fullPage: true });
      }
    });
  }

  test("a wrong PIN and an empty PIN are shown as PIN_INCORRECT and PIN_LEN_RANGE", async () => {
    const slot = await page.$eval("#token-select", (s) => s.value);
    const pinState = () => page.textContent(`#slot-${slot} .pin-state`);
    assert.equal(await pinState(), "ok");
    const wrong = await signInPage(page, "02", "wrong pin", "9999");
    assert.equal(wrong.state, "error");
    assert.equal(wrong.reason, "PIN_INCORRECT");
    assert.match(wrong.error, /PIN_INCORRECT \(1301\)/);
    // The token table follows at once, not after a reload (SoftHSM: "count low" after a wrong PIN).
    assert.notEqual(await pinState(), "ok", "the PIN column shows the token's PIN state after a wrong PIN");
    const empty = await signInPage(page, "02", "empty pin", "");
    assert.equal(empty.reason, "PIN_LEN_RANGE");
    const ok = await signInPage(page, "02", "right pin again");
    assert.equal(ok.state, "signed", ok.error ?? "");
    assert.equal(await page.isVisible("#error"), false, "the error is cleared");
    assert.equal(await pinState(), "ok", "a right PIN: the PIN column says ok again");
  });

  test("at 390 px wide the page does not overflow and the slots table's PIN column is visible", async () => {
    const narrow = await context.newPage();
    try {
      await narrow.setViewportSize({ width: 390, height: 844 });
      await narrow.goto(agent.demoUrl);
      await narrow.waitForSelector('#status[data-state="ready"]', { timeout: 20_000 });
      const fit = await narrow.evaluate(() => {
        const pin = document.querySelector("#slots thead th:last-child").getBoundingClientRect();
        const cell = document.querySelector("#slots tbody .pin-state").getBoundingClientRect();
        return { scrollWidth: document.documentElement.scrollWidth, pinRight: pin.right, pinWidth: pin.width, cellRight: cell.right };
      });
      assert.equal(await narrow.textContent("#slots thead th:last-child"), "PIN");
      assert.ok(fit.scrollWidth <= 390, `the page scrolls sideways: ${JSON.stringify(fit)}`);
      assert.ok(fit.pinWidth > 0 && fit.pinRight <= 390 && fit.cellRight <= 390, `PIN column off screen: ${JSON.stringify(fit)}`);
      assert.ok(await narrow.isVisible("#slots tbody .pin-state"));
    } finally {
      await narrow.close();
    }
  });

  test("the screenshot was written", async () => {
    const png = await readFile(screenshot);
    assert.equal(png.subarray(1, 4).toString(), "PNG");
    assert.ok(png.length > 20_000);
  });
});

test("the demo page on http://localhost:PORT (allowed, not trusted) connects, but signing needs consent", async () => {
  pageErrors = [];
  const page = await openDemo(agent.demoUrl.replace("127.0.0.1", "localhost"));
  try {
    assert.equal(await page.getAttribute("#status", "data-state"), "ready", await page.textContent("#error"));
    const shown = await signInPage(page, "01", "from localhost");
    assert.equal(shown.state, "error");
    assert.equal(shown.reason, "CONSENT_UNAVAILABLE");
    assert.equal(shown.signature, "");
    assert.deepEqual(pageErrors, []);
  } finally {
    await page.close();
  }
});

test("a page from an origin the agent does not allow gets AGENT_UNAVAILABLE", async () => {
  const bundle = await readFile(join(JS_CLIENT, "demo/keyport-client.js"));
  const html = `<!doctype html><meta charset="utf-8"><title>foreign</title><pre id="out">pending</pre>
<script type="module">
  import { KeyportClient } from "/keyport-client.js";
  const out = document.getElementById("out");
  try {
    const client = await KeyportClient.initialize({ url: ${JSON.stringify(agent.url)}, connectTimeout: 5000 });
    out.textContent = JSON.stringify({ connected: true, info: (await client.pkcs11().info()).data });
  } catch (e) {
    out.textContent = JSON.stringify(e);
  }
  out.dataset.done = "1";
</script>`;
  const server = createServer((req, res) => {
    if (req.url === "/keyport-client.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(bundle);
    } else {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const page = await context.newPage();
  try {
    await page.goto(`${origin}/`);
    await page.waitForSelector("#out[data-done]", { timeout: 20_000 });
    const reported = JSON.parse(await page.textContent("#out"));
    assert.equal(reported.connected, undefined, "the agent must not accept this origin");
    assert.equal(reported.reason, "AGENT_UNAVAILABLE");
    assert.equal(reported.code, 2001);
    assert.equal(reported.success, false);
    assert.equal(reported.source, "client");
    // It was the origin check that refused it (the agent is running and logged the refusal).
    const refusals = agent.log().split("\n").filter((l) => l.includes("handshake refused") && l.includes(origin));
    assert.equal(refusals.length >= 1, true, `no logged refusal of ${origin} in:\n${agent.log()}`);
    assert.match(refusals[0], /Origin not allowed/);
  } finally {
    await page.close();
    // Chromium may hold a preconnected socket that never sent a request: close it too.
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test("after the agent restarts the page says connected again, and signing works (openssl verifies)", async () => {
  // An agent of its own, on a port it gets back after the restart.
  const port = await freePort();
  const args = ["--demo", "--demo-dir", join(JS_CLIENT, "demo"), "--trust-origin", `http://127.0.0.1:${port}`];
  let restarted = await startAgent({ conf: token.conf, port, args });
  pageErrors = [];
  const page = await openDemo(restarted.demoUrl);
  try {
    assert.equal(await page.getAttribute("#status", "data-state"), "ready", await page.textContent("#error"));
    await restarted.stop();
    await page.waitForSelector('#status[data-state="closed"]', { timeout: 10_000 });
    assert.match(await page.textContent("#status"), /Reconnecting/);
    restarted = await startAgent({ conf: token.conf, port, args });
    // The client subscribes to token events again by itself (0.5 s, 1 s, 2 s… between tries).
    await page.waitForSelector('#status[data-state="ready"]', { timeout: 30_000 });
    assert.match(await page.textContent("#status"), new RegExp(`Connected again to ws://127\\.0\\.0\\.1:${port}`));
    await page.waitForSelector('#certs[data-state="ready"]', { timeout: 10_000 });
    const key = KEYS[0];
    const text = `Signed after the agent restarted, ${new Date().toISOString()}`;
    const shown = await signInPage(page, key.id, text);
    assert.equal(shown.state, "signed", shown.error ?? "");
    const ok = await opensslVerify({
      certDer: await readCert(token.certsDir, key),
      digest: createHash("sha256").update(text).digest(),
      signature: Buffer.from(shown.signature, "base64"),
      algorithm: "sha256",
    });
    assert.equal(ok, true, "openssl verifies the signature made after the restart");
    assert.equal(await page.getAttribute("#status", "data-state"), "ready");
    assert.deepEqual(pageErrors, []);
  } finally {
    await page.close();
    await restarted.stop();
  }
});
