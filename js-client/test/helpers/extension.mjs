// The extension door in real browsers: the Keyport extension (extension/), the real `keyport`
// binary as its native-messaging host, the scripted notification server for consent, and what
// a page does and sees. Shared by test/browser/extension-chromium.test.mjs (playwright-core) and
// extension-firefox.test.mjs (puppeteer-core over WebDriver BiDi): the page helpers below use
// only what both drivers' Page objects offer (goto, evaluate with one argument, $eval, click,
// waitForSelector).
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO, agentBinary } from "./agent.mjs";

const run = promisify(execFile);

export const EXTENSION_DIR = join(REPO, "extension");
/** The Chrome id the manifest's `key` pins (the host manifests name it). */
export const EXTENSION_ID = "mchpggbacmbihpiigmfcmknhfdhpojoo";
export const GECKO_ID = "keyport@keyport.org";
export const HOST_NAME = "org.keyport.agent";
export const FAULT_MODULE = process.env.KEYPORT_FAULT_MODULE || join(REPO, "target/debug/libkeyport_fault_module.so");
export const FAKE_NOTIFICATIONS = process.env.KEYPORT_FAKE_NOTIFICATIONS || join(REPO, "target/debug/fake-notifications");

/** The Chrome extension id of a manifest `key` (base64 SPKI DER): SHA-256, 32 hex digits as a-p. */
export function extensionIdOfKey(key) {
  const hex = createHash("sha256").update(Buffer.from(key, "base64")).digest("hex").slice(0, 32);
  return [...hex].map((c) => String.fromCharCode(97 + Number.parseInt(c, 16))).join("");
}

/** extension/manifest.json. */
export function extensionManifest() {
  return JSON.parse(readFileSync(join(EXTENSION_DIR, "manifest.json"), "utf8"));
}

/** Throws a clear error when a helper binary the tests need was not built (tests fail, never skip). */
export function requireBuilt() {
  for (const [file, what] of [
    [FAULT_MODULE, "KEYPORT_FAULT_MODULE"],
    [FAKE_NOTIFICATIONS, "KEYPORT_FAKE_NOTIFICATIONS"],
  ]) {
    if (!existsSync(file)) {
      throw new Error(`${file} not built: cargo build -p keyport-fault-module -p keyport-e2e --bin fake-notifications (or set ${what})`);
    }
  }
}

/**
 * Write the host manifest for `kind` ("chromium" or "firefox") to `file`, as the agent renders it
 * (`keyport native-host --print-manifest KIND --host-path BIN`): `path` is the agent binary, so the
 * browser starts the very `keyport` the tests run.
 */
export async function writeHostManifest(kind, file) {
  const bin = agentBinary();
  const { stdout } = await run(bin, ["native-host", "--print-manifest", kind, "--host-path", bin], { timeout: 30_000 });
  const manifest = JSON.parse(stdout);
  if (manifest.name !== HOST_NAME || manifest.path !== bin) throw new Error(`unexpected host manifest: ${stdout}`);
  await mkdir(join(file, ".."), { recursive: true });
  await writeFile(file, JSON.stringify(manifest, null, 2));
  return manifest;
}

/** Where the Keyport package installs host manifests for every user (Linux). */
export const SYSTEM_HOST_MANIFESTS = [
  "/etc/chromium/native-messaging-hosts/org.keyport.agent.json",
  "/etc/opt/chrome/native-messaging-hosts/org.keyport.agent.json",
  "/usr/lib/mozilla/native-messaging-hosts/org.keyport.agent.json",
  "/usr/lib64/mozilla/native-messaging-hosts/org.keyport.agent.json",
];

/**
 * Rename the host manifest away while `fn` runs: a browser with the extension and no host at all.
 * Browsers fall back to the system-wide manifests, so this needs a machine without the Keyport
 * package installed: it says so instead of testing the wrong thing.
 */
export async function withoutHostManifest(file, fn) {
  const installed = SYSTEM_HOST_MANIFESTS.filter((f) => existsSync(f));
  if (installed.length > 0) {
    throw new Error(`a system-wide Keyport host manifest is installed (${installed.join(", ")}): "no host" cannot be tested here`);
  }
  await rename(file, `${file}.away`);
  try {
    return await fn();
  } finally {
    await rename(`${file}.away`, file);
  }
}

/**
 * Replace the host manifest with one whose `path` names a program that does not exist while
 * `fn` runs (the agent uninstalled, its manifest left behind). The per-user (profile) manifest
 * shadows any system-wide one, so this holds on any machine.
 */
export async function withStaleHostManifest(file, fn) {
  const original = await readFile(file, "utf8");
  const stale = { ...JSON.parse(original), path: join(file, "..", "uninstalled", "keyport") };
  await writeFile(file, JSON.stringify(stale, null, 2));
  try {
    return await fn();
  } finally {
    await writeFile(file, original);
  }
}

/**
 * The environment the browser passes to the host it starts: the host reads the agent's address
 * from `$XDG_CONFIG_HOME/keyport/keyport.toml` (written here with `listen = 127.0.0.1:PORT`),
 * never the machine's own configuration, and logs under `$XDG_STATE_HOME/keyport/`.
 */
export async function hostEnvironment(dir, agentPort) {
  const config = join(dir, "host-config");
  const state = join(dir, "host-state");
  await mkdir(join(config, "keyport"), { recursive: true });
  await mkdir(state, { recursive: true });
  await writeFile(join(config, "keyport", "keyport.toml"), `listen = "127.0.0.1:${agentPort}"\n`);
  return {
    env: {
      XDG_CONFIG_HOME: config,
      XDG_STATE_HOME: state,
      KEYPORT_SYSTEM_CONFIG: join(dir, "no-system-config.toml"),
      RUST_LOG: "info,keyport=debug",
    },
    /** What the hosts logged (for a failure's message). */
    log: () => readFile(join(state, "keyport", "native-host.log"), "utf8").catch(() => "(no host log)"),
  };
}

/**
 * A private D-Bus session bus with the scripted notification server on it (`fake-notifications`,
 * `script` as it takes it, e.g. "allow"). `env` is for the agent; `notifications()` lists the
 * prompts shown so far.
 */
export async function startNotifications(dir, script) {
  const { stdout } = await run("dbus-daemon", ["--session", "--fork", "--nosyslog", "--print-address=1", "--print-pid=1"], {
    timeout: 10_000,
  });
  const [address, pid] = stdout.trim().split("\n").map((l) => l.trim());
  if (!address.startsWith("unix:")) throw new Error(`dbus-daemon: ${stdout}`);
  const record = join(dir, `notifications-${script.replace(/,/g, "-")}.jsonl`);
  const child = spawn(FAKE_NOTIFICATIONS, ["--record", record, "--script", script], {
    env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: address },
    stdio: ["pipe", "pipe", "inherit"],
  });
  await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("fake-notifications did not start in 10 s")), 10_000);
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`fake-notifications exited (${code})`)));
  });
  return {
    env: { DBUS_SESSION_BUS_ADDRESS: address },
    /** The notifications shown so far (complete JSON lines only). */
    async notifications() {
      const text = await readFile(record, "utf8").catch(() => "");
      const complete = text.slice(0, text.lastIndexOf("\n") + 1);
      return complete
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l))
        .filter((r) => r.event === "notify");
    },
    async stop() {
      child.stdin.end();
      child.kill("SIGTERM");
      try {
        process.kill(Number(pid), "SIGTERM");
      } catch {
        // already gone
      }
    },
  };
}

/** The agent's log lines about `origin` through `door`: `door=extension` (or `door="extension"`). */
function logLines(agent, origin, door) {
  const tag = new RegExp(`door="?${door}"?`);
  return agent
    .log()
    .split("\n")
    .filter((l) => l.includes(origin) && tag.test(l));
}

/** Connections the agent logged from `origin` through `door` ("extension" or "websocket"). */
export function connectionsFrom(agent, origin, door) {
  return logLines(agent, origin, door).filter((l) => / connected/.test(l)).length;
}

/** The handshakes the agent refused from `origin` through `door`. */
export function refusalsOf(agent, origin, door) {
  return logLines(agent, origin, door).filter((l) => l.includes("handshake refused"));
}

/** Resolves with `fn()` once it is truthy (the agent's log is read through a pipe: a line may lag). */
export async function eventually(fn, ms = 5_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = fn();
    if (value || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---- in the page ----

const attr = (page, sel, name) => page.$eval(sel, (e, n) => e.getAttribute(n), name);
const text = (page, sel) => page.$eval(sel, (e) => e.textContent);

/** Set an input's value as a person typing would (both drivers). */
export async function fill(page, sel, value) {
  await page.$eval(
    sel,
    (e, v) => {
      e.value = v;
      e.dispatchEvent(new Event("input", { bubbles: true }));
    },
    value,
  );
}

/** Open the demo page at `url` in `page`; wait until it has connected or failed; what it shows. */
export async function openDemo(page, url, timeout = 30_000) {
  await page.goto(url);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout });
  return {
    status: await attr(page, "#status", "data-state"),
    door: await attr(page, "#door", "data-door"),
    permission: await attr(page, "#permission", "data-state"),
    reason: await attr(page, "#error", "data-reason"),
    error: await page.$eval("#error", (e) => (e.hidden ? null : e.textContent)),
  };
}

/** Sign `textToSign` with certificate `certId` in the demo page; what the page shows. */
export async function signInPage(page, certId, textToSign, pin) {
  // Clicked in the page (one step: no element handle that a re-rendered list could detach).
  await page.$eval(`#cert-${certId}`, (e) => e.click());
  await fill(page, "#text", textToSign);
  await page.$eval("#pin-path", (s) => {
    s.value = "page";
    s.dispatchEvent(new Event("change", { bubbles: true }));
  });
  await fill(page, "#pin", pin);
  await page.$eval("#sign", (e) => e.click());
  await page.waitForSelector('#result[data-state="signed"], #result[data-state="error"]', { timeout: 60_000 });
  return {
    state: await attr(page, "#result", "data-state"),
    digest: (await text(page, "#digest")).trim(),
    signature: (await text(page, "#signature")).trim(),
    valid: await attr(page, "#verify-result", "data-valid"),
    error: await page.$eval("#error", (e) => (e.hidden ? null : e.textContent)),
  };
}

/**
 * Wait until the demo page has heard no token event and reloaded nothing for `quietMs` (it
 * reloads its lists 150 ms after the last event): then its certificate list stays put.
 */
export async function settled(page, quietMs = 600, limitMs = 15_000) {
  const deadline = Date.now() + limitMs;
  let last = null;
  for (;;) {
    const now = await page.$eval("#token-events", (e) => `${e.dataset.count}|${document.querySelector("#certs").dataset.state}`);
    if (now === last && now.endsWith("|ready")) return;
    if (Date.now() > deadline) throw new Error(`the demo page did not settle (${now})`);
    last = now;
    await new Promise((r) => setTimeout(r, quietMs));
  }
}

/** `KeyportClient.initialize(config)` in the page (the demo's bundle), then agentInfo(): how it ends. */
export function initializeIn(page, config) {
  return page.evaluate(async (config) => {
    const { KeyportClient } = await import("/demo/keyport-client.js");
    const started = performance.now();
    try {
      const client = await KeyportClient.initialize(config);
      const info = (await client.agentInfo()).data;
      const slots = (await client.pkcs11().slotsWithTokenPresent()).data.length;
      client.close();
      return { connected: true, info, slots, ms: performance.now() - started };
    } catch (e) {
      return { connected: false, error: { ...e }, ms: performance.now() - started };
    }
  }, config);
}

/**
 * Speak the content script's protocol by hand from the page, adding a forged `origin` to every
 * message: open a connection, and if it opens, ask for the slots. Resolves with what came back.
 */
export function forgeFromPage(page, claimedOrigin) {
  return page.evaluate(async (claimed) => {
    const port = `forge${Math.random().toString(16).slice(2)}`;
    const next = () =>
      new Promise((resolve) => {
        const timer = setTimeout(() => {
          window.removeEventListener("message", listener);
          resolve({ type: "timeout" });
        }, 15_000);
        const listener = (e) => {
          if (e.source !== window || e.data?.keyport !== "from-extension" || e.data.port !== port) return;
          clearTimeout(timer);
          window.removeEventListener("message", listener);
          resolve(e.data);
        };
        window.addEventListener("message", listener);
      });
    const opened = next();
    window.postMessage({ keyport: "to-extension", type: "open", port, origin: claimed, sender: { origin: claimed } }, location.origin);
    const first = await opened;
    if (first.type !== "ready") return { first };
    const answered = next();
    window.postMessage(
      {
        keyport: "to-extension",
        type: "message",
        port,
        origin: claimed,
        text: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "pkcs11.slots", params: {}, origin: claimed }),
      },
      location.origin,
    );
    const answer = await answered;
    window.postMessage({ keyport: "to-extension", type: "close", port }, location.origin);
    return { first, answer };
  }, claimedOrigin);
}

/**
 * `n` signData calls one after the other from the page through `transport`, after `warmup`
 * unmeasured ones: the milliseconds of each (performance.now around the call).
 */
export function timeSignatures(page, { transport, url, certId, pin, n, warmup = 10 }) {
  return page.evaluate(
    async ({ transport, url, certId, pin, n, warmup }) => {
      const { KeyportClient } = await import("/demo/keyport-client.js");
      const client = await KeyportClient.initialize({ transport, url });
      const pkcs11 = client.pkcs11();
      const slots = (await pkcs11.slotsWithTokenPresent()).data;
      let slot;
      for (const s of slots) {
        if ((await pkcs11.token(s.slot_id)).data.label === "keyport-demo") slot = s.slot_id;
      }
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("latency")));
      const data = btoa(String.fromCharCode(...digest));
      const request = { slot_id: slot, cert_id: certId, pin, data, algorithm_reference: "sha256" };
      const times = [];
      for (let i = 0; i < warmup + n; i++) {
        const t0 = performance.now();
        await pkcs11.signData(request);
        if (i >= warmup) times.push(performance.now() - t0);
      }
      const door = client.door;
      client.close();
      return { door, times };
    },
    { transport, url, certId, pin, n, warmup },
  );
}

/** The p-th percentile (0–100) of `values`, nearest rank. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}
