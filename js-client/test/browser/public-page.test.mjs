// Chromium with the page on a *public* web site, as in a real deployment: Local Network Access
// (Chrome 147+) then needs the `loopback-network` permission before the page may open
// ws://127.0.0.1. The page is the demo page served at http://public.test:PORT, which Chromium is
// told to resolve to 127.0.0.1, to treat as a secure context (as an https site would be) and to
// classify as public address space.
//
//   (a) no grant   → LOCAL_NETWORK_BLOCKED in bounded time, never AGENT_UNAVAILABLE, never a hang;
//   (b) granted    → the whole flow; the signature verified by openssl;
//   (c) denied     → LOCAL_NETWORK_BLOCKED at once, without touching the network;
//   (d) the administrator's policy (LoopbackNetworkAllowedForUrls) → works with no prompt;
//   (e) a person at a headed Chromium (Xvfb) answers the browser's real prompt: while it is up
//       the page says so (`permission-prompt`); Allow connects, Block is LOCAL_NETWORK_BLOCKED;
//   and the demo page served by the agent itself (same address space) keeps working.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { JS_CLIENT, KEYS, PIN, freePort, provisionToken, readCert, startAgent, tempDir } from "../helpers/agent.mjs";
import { PUBLIC_HOST, demoRoutes, servePages } from "../helpers/pages.mjs";
import { startXvfb } from "../helpers/xvfb.mjs";
import { opensslVerify } from "../helpers/verify.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
// Chromium reports a socket to loopback from a public page as refused at once under automation;
// the client must say so well within this (it never waits for its 60 s prompt timeout then).
const BOUNDED_MS = 10_000;
const SCREENSHOTS = process.env.UPDATE_SCREENSHOT === "1" ? join(JS_CLIENT, "..", "docs") : null;

// Chromium on Linux reads an administrator's policies from here (root only).
const POLICY_DIR = "/etc/chromium/policies/managed";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let tmp;
let token;
let agent;
let site;
let siteOrigin;
/** Two more sites for the person's two answers (a permission is per origin). */
let answerSites;
let context;
let cdp;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN)`);
  assert.ok(existsSync(join(JS_CLIENT, "demo/keyport-client.js")), "run `npm run build` first (it emits demo/keyport-client.js)");
  tmp = await tempDir();
  token = await provisionToken(join(tmp.dir, "token"));
  site = await servePages(await demoRoutes());
  siteOrigin = `http://${PUBLIC_HOST}:${site.port}`;
  answerSites = [await servePages(await demoRoutes()), await servePages(await demoRoutes())];
  const answerOrigins = answerSites.map((s) => `http://${PUBLIC_HOST}:${s.port}`);
  const port = await freePort();
  agent = await startAgent({
    conf: token.conf,
    port,
    // The site is trusted (no consent prompt: none can be answered here); the agent's own demo
    // page is served too, for the same-address-space case.
    args: [
      "--demo",
      "--demo-dir",
      join(JS_CLIENT, "demo"),
      "--trust-origin",
      siteOrigin,
      "--trust-origin",
      `http://127.0.0.1:${port}`,
      ...answerOrigins.flatMap((o) => ["--trust-origin", o]),
    ],
    // Connections are logged at debug: the tests read whether the site's handshake arrived.
    env: { RUST_LOG: "info,keyport::server=debug" },
  });
  context = await launchPublic("profile");
  // A persistent context is Chromium's default context: Browser.setPermission without a context id
  // applies to it.
  cdp = await context.newCDPSession(context.pages()[0] ?? (await context.newPage()));
});

after(async () => {
  await context?.close();
  await agent?.stop();
  await site?.close();
  for (const s of answerSites ?? []) await s.close();
  await tmp?.cleanup();
});

/** Chromium with a fresh profile in which http://public.test:PORT is a public, secure site. */
function launchPublic(profile) {
  return chromium.launchPersistentContext(join(tmp.dir, profile), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      ...CHROMIUM_ARGS,
      `--host-resolver-rules=MAP ${PUBLIC_HOST} 127.0.0.1`,
      `--unsafely-treat-insecure-origin-as-secure=${siteOrigin}`,
      `--ip-address-space-overrides=127.0.0.1:${site.port}=public`,
    ],
    viewport: { width: 1100, height: 900 },
  });
}

/** How many connections from the public site the agent logged. */
function siteConnections() {
  return agent
    .log()
    .split("\n")
    .filter((l) => / connected/.test(l) && l.includes(siteOrigin)).length;
}

/** Set the site's loopback permission: "granted", "denied" or "prompt" (the default). */
async function setPermission(setting) {
  await cdp.send("Browser.setPermission", { permission: { name: "loopback-network" }, setting, origin: siteOrigin });
}

/** Open the demo page on the public site, pointed at the agent; wait until it has connected or failed. */
async function openPublicDemo(inContext = context) {
  const page = await inContext.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const started = Date.now();
  await page.goto(`${siteOrigin}/demo/?agent=${encodeURIComponent(agent.url)}`);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 30_000 });
  return {
    page,
    errors,
    ms: Date.now() - started,
    status: await page.getAttribute("#status", "data-state"),
    reason: await page.getAttribute("#error", "data-reason"),
    error: (await page.isVisible("#error")) ? await page.textContent("#error") : null,
    permission: await page.getAttribute("#permission", "data-state"),
  };
}

/** The client used directly in the public page: what initialize() rejects with, and when. */
async function initializeIn(page, config = {}) {
  return page.evaluate(
    async ({ url, config }) => {
      const { KeyportClient } = await import("/demo/keyport-client.js");
      const statuses = [];
      const started = performance.now();
      try {
        const client = await KeyportClient.initialize({ url, ...config, onStatus: (s) => statuses.push(s) });
        const info = (await client.agentInfo()).data;
        client.close();
        return { connected: true, info, statuses, ms: performance.now() - started };
      } catch (e) {
        return { connected: false, error: { ...e }, statuses, ms: performance.now() - started };
      }
    },
    { url: agent.url, config },
  );
}

describe("a page on a public site (Chromium Local Network Access)", () => {
  test("(a) without a grant: LOCAL_NETWORK_BLOCKED in bounded time, not AGENT_UNAVAILABLE", async () => {
    await setPermission("prompt");
    const shown = await openPublicDemo();
    try {
      assert.equal(shown.status, "error");
      assert.equal(shown.reason, "LOCAL_NETWORK_BLOCKED", shown.error ?? "");
      assert.match(shown.error, /LOCAL_NETWORK_BLOCKED \(2002\)/);
      assert.match(shown.error, /site settings/, "the message tells the person how to allow it");
      assert.equal(shown.permission, "prompt", "the page shows the permission state it read");
      assert.ok(shown.ms < BOUNDED_MS, `took ${shown.ms} ms`);

      const direct = await initializeIn(shown.page);
      assert.equal(direct.connected, false);
      assert.equal(direct.error.reason, "LOCAL_NETWORK_BLOCKED");
      assert.equal(direct.error.code, 2002);
      assert.equal(direct.error.source, "client");
      assert.ok(direct.ms < BOUNDED_MS, `took ${direct.ms} ms`);
      assert.deepEqual(shown.errors, []);
      if (SCREENSHOTS) await shown.page.screenshot({ path: join(SCREENSHOTS, "browser-blocked.png") });
    } finally {
      await shown.page.close();
    }
    // The browser never let the handshake through: the agent saw nothing from the site.
    assert.equal(siteConnections(), 0, agent.log());
  });

  test("(c) denied: LOCAL_NETWORK_BLOCKED at once, the socket is never tried", async () => {
    await setPermission("denied");
    const shown = await openPublicDemo();
    try {
      assert.equal(shown.reason, "LOCAL_NETWORK_BLOCKED", shown.error ?? "");
      assert.equal(shown.permission, "denied");
      assert.match(shown.error, /blocked|block/);
      const direct = await initializeIn(shown.page);
      assert.equal(direct.error.reason, "LOCAL_NETWORK_BLOCKED");
      assert.deepEqual(direct.statuses, [], "no connection attempt was made");
      assert.ok(direct.ms < 2_000, `took ${direct.ms} ms`);
    } finally {
      await shown.page.close();
    }
  });

  test("(b) granted: slots, certificates, signData verified by openssl, verifySignedData", async () => {
    await setPermission("granted");
    const shown = await openPublicDemo();
    const { page } = shown;
    try {
      assert.equal(shown.status, "ready", shown.error ?? "");
      assert.equal(shown.permission, "granted");
      assert.match(await page.textContent("#slots"), /keyport-demo/);
      const certs = await page.textContent("#certs");
      for (const key of KEYS) assert.match(certs, new RegExp(key.cn));

      for (const key of [KEYS[0], KEYS[1]]) {
        const text = `Signed on ${siteOrigin} with ${key.cn}`;
        await page.check(`#cert-${key.id}`);
        await page.fill("#text", text);
        await page.fill("#pin", PIN);
        await page.click("#sign");
        await page.waitForSelector('#result[data-state="signed"], #result[data-state="error"]', { timeout: 30_000 });
        const state = await page.getAttribute("#result", "data-state");
        assert.equal(state, "signed", (await page.textContent("#error")) ?? "");
        const digest = createHash("sha256").update(text).digest();
        assert.equal((await page.textContent("#digest")).trim(), digest.toString("base64"));
        const signature = Buffer.from((await page.textContent("#signature")).trim(), "base64");
        const ok = await opensslVerify({ certDer: await readCert(token.certsDir, key), digest, signature, algorithm: "sha256" });
        assert.equal(ok, true, `openssl verifies the ${key.cn} signature made from the public page`);
        assert.equal(await page.getAttribute("#verify-result", "data-valid"), "true", "verifySignedData says valid");
      }
      await page.fill("#pin", "");
      if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, "browser-granted.png"), fullPage: true });

      const direct = await initializeIn(page, { minAgentVersion: "0.1.0" });
      assert.equal(direct.connected, true, JSON.stringify(direct.error));
      assert.deepEqual(direct.statuses, ["connecting", "connected"]);
      const tooNew = await initializeIn(page, { minAgentVersion: "99.0.0" });
      assert.equal(tooNew.error.reason, "AGENT_OUTDATED");
      assert.equal(tooNew.error.code, 2003);
      assert.match(tooNew.error.description, /99\.0\.0/);
      assert.deepEqual(shown.errors, []);
    } finally {
      await page.close();
    }
    // This time the agent saw the site's connections, with its origin.
    assert.ok(siteConnections() >= 1, agent.log());
  });
});

test("the agent's own demo page (same address space, no permission involved) keeps working", async () => {
  const page = await context.newPage();
  try {
    await page.goto(agent.demoUrl);
    await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 30_000 });
    assert.equal(await page.getAttribute("#status", "data-state"), "ready", (await page.textContent("#error")) ?? "");
    assert.equal(await page.getAttribute("#permission", "data-state"), "none", "a page on 127.0.0.1 needs no permission");
    assert.match(await page.textContent("#slots"), /keyport-demo/);
  } finally {
    await page.close();
  }
});

test("(d) the administrator's policy LoopbackNetworkAllowedForUrls lets the site connect, no prompt", async () => {
  // The first browser is done: this one starts with the policy in force (and a fresh profile,
  // so no grant from the tests above).
  await context.close();
  context = undefined;
  const file = join(POLICY_DIR, `keyport-test-${process.pid}.json`);
  await mkdir(POLICY_DIR, { recursive: true });
  await writeFile(file, JSON.stringify({ LoopbackNetworkAllowedForUrls: [siteOrigin] }));
  let managed;
  try {
    managed = await launchPublic("profile-managed");
    const shown = await openPublicDemo(managed);
    assert.equal(shown.status, "ready", shown.error ?? "");
    assert.equal(shown.permission, "granted", "the policy shows as a grant");
    assert.match(await shown.page.textContent("#slots"), /keyport-demo/);
  } finally {
    await managed?.close();
    await rm(file, { force: true });
  }
});

test("(e) the person answers Chromium's real prompt (headed, Xvfb): Allow connects, Block is LOCAL_NETWORK_BLOCKED", async () => {
  const x = await startXvfb({ width: 1100, height: 800 });
  const origins = answerSites.map((s) => `http://${PUBLIC_HOST}:${s.port}`);
  let headed;
  try {
    headed = await chromium.launchPersistentContext(join(tmp.dir, "profile-headed"), {
      executablePath: CHROMIUM,
      headless: false,
      env: x.env,
      viewport: null,
      args: [
        ...CHROMIUM_ARGS.filter((a) => a !== "--headless"),
        "--window-size=1100,800",
        "--window-position=0,0",
        `--host-resolver-rules=MAP ${PUBLIC_HOST} 127.0.0.1`,
        `--unsafely-treat-insecure-origin-as-secure=${origins.join(",")}`,
        `--ip-address-space-overrides=${answerSites.map((s) => `127.0.0.1:${s.port}=public`).join(",")}`,
      ],
    });
    // The prompt's buttons, measured on Chromium 156 with this window (it is anchored to the
    // address bar's left end): Block, then Allow.
    const buttons = { Block: [306, 241], Allow: [385, 241] };
    for (const [answer, origin] of [
      ["Allow", origins[0]],
      ["Block", origins[1]],
    ]) {
      const page = await headed.newPage();
      try {
        await page.goto(`${origin}/demo/?agent=${encodeURIComponent(agent.url)}`);
        // The browser is asking, and the page says so (the client's permission-prompt status).
        await page.waitForSelector('#status[data-state="permission-prompt"]', { timeout: 20_000 });
        assert.match(await page.textContent("#status"), /choose Allow/);
        if (answer === "Allow" && SCREENSHOTS) await x.screenshot(join(SCREENSHOTS, "browser-prompt.png"));
        const [bx, by] = buttons[answer];
        await x.xdotool("mousemove", bx, by);
        // Chromium ignores clicks on a prompt that has just appeared (clickjacking guard).
        await new Promise((r) => setTimeout(r, 1500));
        await x.xdotool("click", 1);
        await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 20_000 });
        const status = await page.getAttribute("#status", "data-state");
        const permission = await page.getAttribute("#permission", "data-state");
        if (answer === "Allow") {
          assert.equal(status, "ready", (await page.textContent("#error")) ?? "");
          assert.equal(permission, "granted");
          assert.match(await page.textContent("#slots"), /keyport-demo/);
        } else {
          assert.equal(status, "error");
          assert.equal(await page.getAttribute("#error", "data-reason"), "LOCAL_NETWORK_BLOCKED");
          assert.match(await page.textContent("#error"), /blocked it/);
          assert.equal(permission, "denied");
        }
      } finally {
        await page.close();
      }
    }
  } finally {
    await headed?.close();
    await x.stop();
  }
});
