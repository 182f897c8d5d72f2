// The extension door in headless Chromium: the Keyport extension loaded unpacked (its pinned
// id), the REAL `keyport` binary as its native-messaging host (host manifest in the profile's
// NativeMessagingHosts), the real agent on a SoftHSM token behind the fault module, consent
// through the scripted notification server on a private D-Bus. The pages are https sites that
// Chromium classifies as PUBLIC, with NO loopback permission granted: the WebSocket door is
// closed to them, the extension's is open.
//
//   site    https://public.test:P1  allowed, each signature needs consent ("allow" scripted)
//   trusted https://public.test:P2  trusted (no consent): the claimed origin of the forgery, latency
//   forger  https://public.test:P3  not allowed: forges origins, frames the trusted site
//   plain   http://public.test:P4   plain http: the content script does not run there (no extension)
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { JS_CLIENT, KEYS, PIN, freePort, provisionToken, readCert, startAgent, tempDir } from "../helpers/agent.mjs";
import {
  EXTENSION_DIR,
  EXTENSION_ID,
  FAULT_MODULE,
  connectionsFrom,
  eventually,
  extensionIdOfKey,
  extensionManifest,
  forgeFromPage,
  hostEnvironment,
  initializeIn,
  openDemo,
  percentile,
  refusalsOf,
  requireBuilt,
  settled,
  signInPage,
  startNotifications,
  timeSignatures,
  withStaleHostManifest,
  withoutHostManifest,
  writeHostManifest,
} from "../helpers/extension.mjs";
import { serveHttpsPages } from "../helpers/firefox.mjs";
import { PUBLIC_HOST, demoRoutes, servePages } from "../helpers/pages.mjs";
import { opensslVerify } from "../helpers/verify.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const LATENCY_N = Number(process.env.KEYPORT_LATENCY_N || 200);

let tmp;
let token;
let faultDir;
let agent;
let notes;
let host;
let sites; // { site, trusted, forger }: servers
let origins; // the same, as origins
let context;
let cdp;
let hostManifest;
let browserVersion;

/** Write the fault module's control file atomically (slot events on; `text` adds faults). */
async function control(text) {
  await writeFile(join(faultDir, "fault.conf.tmp"), `slot_events=1\n${text}`);
  await rename(join(faultDir, "fault.conf.tmp"), join(faultDir, "fault.conf"));
}

const BLANK = { type: "text/html; charset=utf-8", body: '<!doctype html><meta charset="utf-8"><title>blank</title><p id="blank">blank</p>' };

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN)`);
  assert.ok(existsSync(join(JS_CLIENT, "demo/keyport-client.js")), "run `npm run build` first (it emits demo/keyport-client.js)");
  requireBuilt();
  tmp = await tempDir();
  token = await provisionToken(join(tmp.dir, "token"));
  faultDir = join(tmp.dir, "fault");
  await mkdir(faultDir, { recursive: true });
  const module = join(faultDir, "libkeyport_fault_module.so");
  await copyFile(FAULT_MODULE, module);
  await control("");

  const routes = { ...(await demoRoutes()), "/blank": BLANK };
  sites = {
    site: await serveHttpsPages(routes, tmp.dir),
    trusted: await serveHttpsPages(routes, tmp.dir),
    forger: await serveHttpsPages(routes, tmp.dir),
    plain: await servePages(routes),
  };
  origins = Object.fromEntries(
    Object.entries(sites).map(([k, s]) => [k, `${k === "plain" ? "http" : "https"}://${PUBLIC_HOST}:${s.port}`]),
  );

  notes = await startNotifications(tmp.dir, "allow");
  const port = await freePort();
  agent = await startAgent({
    conf: token.conf,
    port,
    module,
    args: ["--allow-origin", origins.site, "--trust-origin", origins.trusted],
    env: { RUST_LOG: "info,keyport::server=debug", ...notes.env },
  });
  host = await hostEnvironment(tmp.dir, agent.port);

  const profile = join(tmp.dir, "profile");
  hostManifest = join(profile, "NativeMessagingHosts", "org.keyport.agent.json");
  await writeHostManifest("chromium", hostManifest);
  const ports = Object.values(sites).map((s) => `127.0.0.1:${s.port}=public`);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // Playwright turns extensions off by default.
    ignoreDefaultArgs: ["--disable-extensions"],
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--disable-extensions-except=${EXTENSION_DIR}`,
      `--load-extension=${EXTENSION_DIR}`,
      "--disable-features=DisableLoadExtensionCommandLineSwitch",
      "--ignore-certificate-errors",
      `--host-resolver-rules=MAP ${PUBLIC_HOST} 127.0.0.1`,
      `--ip-address-space-overrides=${ports.join(",")}`,
    ],
    env: { ...process.env, ...host.env },
    viewport: { width: 1100, height: 900 },
  });
  const first = context.pages()[0] ?? (await context.newPage());
  cdp = await context.newCDPSession(first);
  browserVersion = (await cdp.send("Browser.getVersion")).product;
});

after(async () => {
  await context?.close();
  await agent?.stop();
  await notes?.stop();
  for (const s of Object.values(sites ?? {})) await s.close();
  await tmp?.cleanup();
});

/** A new page; its uncaught errors are collected in `page.errors`. */
async function newPage() {
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  return page;
}

const demoUrl = (origin, query = "") => `${origin}/demo/?agent=${encodeURIComponent(agent.url)}${query}`;

/** On failure, the agent's and the hosts' logs help. */
async function logs() {
  return `agent log:\n${agent.log().split("\n").slice(-40).join("\n")}\nhost log:\n${(await host.log()).split("\n").slice(-40).join("\n")}`;
}

test("the unpacked extension runs under the id its manifest's key pins", async () => {
  assert.equal(extensionIdOfKey(extensionManifest().key), EXTENSION_ID);
  const worker =
    context.serviceWorkers().find((w) => w.url().startsWith("chrome-extension://")) ??
    (await context.waitForEvent("serviceworker", { timeout: 10_000 }));
  assert.equal(new URL(worker.url()).host, EXTENSION_ID, worker.url());
  assert.match(worker.url(), /\/background\.js$/);
});

describe("the demo page on a public https site, no loopback permission", () => {
  let page;
  let shown;
  before(async () => {
    page = await newPage();
    shown = await openDemo(page, demoUrl(origins.site));
  });
  after(async () => {
    await page?.close();
  });

  test("connects through the extension (the WebSocket door is closed to this page)", async () => {
    assert.equal(shown.status, "ready", `${shown.error}\n${await logs()}`);
    assert.equal(shown.door, "extension");
    assert.match(await page.textContent("#door"), /through the Keyport browser extension/);
    assert.equal(shown.permission, "prompt", "the page was never granted the loopback permission");
    assert.ok(await eventually(() => connectionsFrom(agent, origins.site, "extension") >= 1), await logs());
    assert.equal(connectionsFrom(agent, origins.site, "websocket"), 0);
    // The same page through the WebSocket: Chromium blocks it (public site, no grant).
    const ws = await initializeIn(page, { url: agent.url, transport: "websocket" });
    assert.equal(ws.connected, false);
    assert.equal(ws.error.reason, "LOCAL_NETWORK_BLOCKED", JSON.stringify(ws.error));
    // And agentInfo() says which door.
    const ext = await initializeIn(page, { transport: "extension" });
    assert.equal(ext.connected, true, JSON.stringify(ext.error));
    assert.equal(ext.info.door, "extension");
    assert.ok(ext.slots >= 1);
  });

  test("lists slots, tokens and the certificates of every key type", async () => {
    assert.match(await page.textContent("#slots"), /keyport-demo/);
    const certs = await page.textContent("#certs");
    for (const key of KEYS) assert.match(certs, new RegExp(key.cn));
    assert.match(certs, /Key: RSA 2048/);
    assert.match(certs, /Key: EC P-521/);
  });

  for (const key of KEYS) {
    test(`signs with ${key.cn} after consent named the page's origin; openssl verifies`, async () => {
      const before = (await notes.notifications()).length;
      const text = `Signed on ${origins.site} through the extension with ${key.cn}`;
      const signed = await signInPage(page, key.id, text, PIN);
      assert.equal(signed.state, "signed", `${signed.error}\n${await logs()}`);
      const digest = createHash("sha256").update(text).digest();
      assert.equal(signed.digest, digest.toString("base64"));
      const ok = await opensslVerify({
        certDer: await readCert(token.certsDir, key),
        digest,
        signature: Buffer.from(signed.signature, "base64"),
        algorithm: "sha256",
      });
      assert.equal(ok, true, `openssl verifies the ${key.cn} signature made through the extension`);
      assert.equal(signed.valid, "true");
      const asked = (await notes.notifications()).slice(before);
      assert.equal(asked.length, 1, JSON.stringify(asked));
      assert.ok(asked[0].summary.includes(origins.site), `the prompt names ${origins.site}: ${asked[0].summary}`);
      assert.ok(asked[0].body.includes(key.cn), asked[0].body);
    });
  }

  test("no uncaught page errors; the PIN is in no log", async () => {
    assert.deepEqual(page.errors, []);
    assert.ok(!agent.log().includes(PIN));
    assert.ok(!(await host.log()).includes(PIN));
  });
});

describe("the page cannot choose its origin", () => {
  test("a page that puts another origin in its messages is judged by its real one (refused)", async () => {
    const page = await newPage();
    try {
      await page.goto(`${origins.forger}/blank`);
      const trustedBefore = connectionsFrom(agent, origins.trusted, "extension");
      const r = await forgeFromPage(page, origins.trusted);
      assert.equal(r.first.type, "error", JSON.stringify(r));
      assert.equal(r.first.reason, "AGENT_UNAVAILABLE");
      assert.match(r.first.message, new RegExp(`refused ${origins.forger.replace(/\./g, "\\.")}`), r.first.message);
      assert.equal(connectionsFrom(agent, origins.trusted, "extension"), trustedBefore, "nothing connected as the claimed origin");
      assert.ok(await eventually(() => refusalsOf(agent, origins.forger, "extension").length >= 1), await logs());
    } finally {
      await page.close();
    }
  });

  test("a page that frames a trusted site cannot speak through the frame's content script", async () => {
    const page = await newPage();
    try {
      await page.goto(`${origins.forger}/blank`);
      const before = connectionsFrom(agent, origins.trusted, "extension");
      // The forger posts the protocol into the trusted frame's window: ignored (not from itself).
      const frameUrl = `${origins.trusted}/blank`;
      await page.evaluate(async (src) => {
        const frame = document.createElement("iframe");
        frame.src = src;
        await new Promise((r) => {
          frame.onload = r;
          document.body.append(frame);
        });
        const text = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "pkcs11.slots", params: {} });
        frame.contentWindow.postMessage({ keyport: "to-extension", type: "hello", nonce: "n" }, "*");
        frame.contentWindow.postMessage({ keyport: "to-extension", type: "open", port: "framed01" }, "*");
        frame.contentWindow.postMessage({ keyport: "to-extension", type: "message", port: "framed01", text }, "*");
      }, frameUrl);
      await new Promise((r) => setTimeout(r, 2_000));
      assert.equal(connectionsFrom(agent, origins.trusted, "extension"), before, "the frame's content script ignored the forger");
      // Control: the content script is live in that frame, and answers the frame itself.
      const frame = page.frames().find((f) => f.url() === frameUrl);
      assert.ok(frame, "the trusted frame loaded");
      const own = await forgeFromPage(frame, origins.forger);
      assert.equal(own.first.type, "ready", JSON.stringify(own));
      assert.ok(Array.isArray(own.answer.message.result), JSON.stringify(own.answer));
      assert.ok(await eventually(() => connectionsFrom(agent, origins.trusted, "extension") === before + 1), await logs());
    } finally {
      await page.close();
    }
  });
});

describe("errors that name what is missing", () => {
  test("a site the agent does not allow is refused: AGENT_UNAVAILABLE naming it", async () => {
    const page = await newPage();
    try {
      const shown = await openDemo(page, demoUrl(origins.forger));
      assert.equal(shown.status, "error");
      assert.equal(shown.reason, "AGENT_UNAVAILABLE", shown.error);
      assert.match(shown.error, /refused/);
      assert.match(shown.error, new RegExp(origins.forger.replace(/\./g, "\\.")));
      const r = await initializeIn(page, { transport: "extension" });
      assert.equal(r.error.code, 2001);
      assert.equal(r.error.source, "client");
    } finally {
      await page.close();
    }
  });

  test("no native host installed: NATIVE_HOST_UNAVAILABLE (extension, and auto when the WebSocket is blocked too)", async () => {
    const page = await newPage();
    try {
      await page.goto(`${origins.site}/blank`);
      await withoutHostManifest(hostManifest, async () => {
        const ext = await initializeIn(page, { transport: "extension" });
        assert.equal(ext.connected, false);
        assert.equal(ext.error.reason, "NATIVE_HOST_UNAVAILABLE", JSON.stringify(ext.error));
        assert.equal(ext.error.code, 2005);
        assert.match(ext.error.description, /native messaging host not found/i);
        const auto = await initializeIn(page, { url: agent.url });
        assert.equal(auto.error.reason, "NATIVE_HOST_UNAVAILABLE", JSON.stringify(auto.error));
        assert.match(auto.error.description, /LOCAL_NETWORK_BLOCKED/);
      });
      // Installed again: it works again (the browser reads the manifest at each connection).
      // A manifest left behind by an uninstalled agent: its program is gone.
      const stale = await withStaleHostManifest(hostManifest, () => initializeIn(page, { transport: "extension" }));
      assert.equal(stale.connected, false);
      assert.equal(stale.error.reason, "NATIVE_HOST_UNAVAILABLE", JSON.stringify(stale.error));
      const back = await initializeIn(page, { transport: "extension" });
      assert.equal(back.connected, true, JSON.stringify(back.error));
    } finally {
      await page.close();
    }
  });

  test("no extension in the page: EXTENSION_UNAVAILABLE with transport extension, the WebSocket with auto", async () => {
    // The content script runs on https pages (and http://localhost, http://127.0.0.1) only: on
    // this plain-http public page nothing answers the hello.
    const page = await newPage();
    try {
      await page.goto(`${origins.plain}/blank`);
      const ext = await initializeIn(page, { transport: "extension", url: agent.url });
      assert.equal(ext.connected, false);
      assert.equal(ext.error.reason, "EXTENSION_UNAVAILABLE", JSON.stringify(ext.error));
      assert.equal(ext.error.code, 2004);
      assert.ok(ext.ms >= 250 && ext.ms < 3_000, `gave up after ${ext.ms} ms`);
      const auto = await initializeIn(page, { url: agent.url });
      // auto fell back to the WebSocket, which Chromium blocks for this public page.
      assert.equal(auto.error.reason, "LOCAL_NETWORK_BLOCKED", JSON.stringify(auto.error));
    } finally {
      await page.close();
    }
  });
});

describe("token events through the extension", () => {
  test("a pulled card leaves the demo page's list and comes back, told by the agent through the extension", async () => {
    const page = await newPage();
    try {
      const shown = await openDemo(page, demoUrl(origins.site));
      assert.equal(shown.door, "extension", shown.error ?? "");
      const slot = await page.$$eval("#slots tbody tr", (rows) => {
        const row = rows.find((r) => r.cells[2].textContent === "keyport-demo");
        return row ? Number(row.id.replace("slot-", "")) : null;
      });
      assert.ok(slot !== null, "the demo token is listed");
      await control("hide_tokens=1\ntoken_epoch=1\n");
      await page.waitForSelector(`#token-events[data-events~="removed:${slot}"]`, { timeout: 15_000 }).catch(async (e) => {
        throw new Error(`${e.message}\n${await logs()}`);
      });
      await control("hide_tokens=0\ntoken_epoch=1\n");
      await page.waitForSelector(`#token-events[data-events~="inserted:${slot}"]`, { timeout: 15_000 });
      await page.waitForSelector(`#cert-${KEYS[1].id}`, { timeout: 15_000 });
      await settled(page);
      const text = "Signed through the extension after the card came back";
      const signed = await signInPage(page, KEYS[1].id, text, PIN);
      assert.equal(signed.state, "signed", signed.error ?? "");
      const ok = await opensslVerify({
        certDer: await readCert(token.certsDir, KEYS[1]),
        digest: createHash("sha256").update(text).digest(),
        signature: Buffer.from(signed.signature, "base64"),
        algorithm: "sha256",
      });
      assert.equal(ok, true);
      assert.deepEqual(page.errors, []);
    } finally {
      await control("");
      await page.close();
    }
  });
});

test("latency: signData p50 through the extension and through the WebSocket, same browser, same agent", async (t) => {
  // The WebSocket door needs the loopback permission on a public site: granted for this one only.
  await cdp.send("Browser.setPermission", { permission: { name: "loopback-network" }, setting: "granted", origin: origins.trusted });
  const page = await newPage();
  try {
    await page.goto(`${origins.trusted}/blank`);
    const runs = { extension: [], websocket: [] };
    // Alternate the doors so that drift (other load on the machine) touches both alike.
    for (let round = 0; round < 4; round++) {
      for (const transport of ["extension", "websocket"]) {
        const r = await timeSignatures(page, { transport, url: agent.url, certId: KEYS[1].id, pin: PIN, n: LATENCY_N / 4 });
        assert.equal(r.door, transport);
        runs[transport].push(...r.times);
      }
    }
    const line = (door) =>
      `${door}: p50 ${percentile(runs[door], 50).toFixed(2)} ms, p95 ${percentile(runs[door], 95).toFixed(2)} ms (n=${runs[door].length})`;
    const added = percentile(runs.extension, 50) - percentile(runs.websocket, 50);
    const report = `signData (EC P-256, trusted site) in ${browserVersion}: ${line("extension")}; ${line("websocket")}; the extension adds ${added.toFixed(2)} ms at p50`;
    t.diagnostic(report);
    assert.ok(percentile(runs.extension, 50) > 0 && percentile(runs.websocket, 50) > 0);
  } finally {
    await page.close();
  }
});

test("a stopped agent: AGENT_UNAVAILABLE through the extension, for a connected page and a new one", async () => {
  const page = await newPage();
  try {
    await page.goto(`${origins.site}/blank`);
    const connected = await page.evaluate(async () => {
      const { KeyportClient } = await import("/demo/keyport-client.js");
      window.statuses = [];
      window.client = await KeyportClient.initialize({ transport: "extension", onStatus: (s) => window.statuses.push(s) });
      return window.client.door;
    });
    assert.equal(connected, "extension");
    await agent.stop();
    // The host saw the agent go and exited: the page's connection closed.
    await page.waitForFunction(() => window.statuses.includes("closed"), null, { timeout: 15_000 });
    const after = await page.evaluate(async () => {
      try {
        await window.client.pkcs11().info();
        return { ok: true };
      } catch (e) {
        return { error: { ...e } };
      }
    });
    assert.equal(after.error?.reason, "AGENT_UNAVAILABLE", JSON.stringify(after));
    assert.match(after.error.description, /not running/);
    assert.equal(after.error.source, "client");
    const fresh = await newPage();
    try {
      const other = await openDemo(fresh, demoUrl(origins.site));
      assert.equal(other.status, "error");
      assert.equal(other.reason, "AGENT_UNAVAILABLE", other.error ?? "");
      assert.match(other.error, /not running/);
    } finally {
      await fresh.close();
    }
  } finally {
    await page.close();
  }
});
