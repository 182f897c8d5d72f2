// Drive Debian's Firefox ESR (the system binary, nothing downloaded) with puppeteer-core over
// WebDriver BiDi, offline; make a page served from 127.0.0.1 look like a public web site to it;
// and a probe page that records what a page can observe of a WebSocket to the agent.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { createServer } from "node:https";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import puppeteer from "puppeteer-core";
import { PUBLIC_HOST } from "./pages.mjs";

export const FIREFOX = process.env.FIREFOX_BIN || "/usr/bin/firefox-esr";

/**
 * Preferences that keep Firefox off the network on a machine with none: no update, telemetry,
 * experiment, add-on, safe-browsing, captive-portal, DNS-over-HTTPS or speculative traffic.
 * (puppeteer-core already sets many of these; they are repeated so that the list stands alone.)
 */
export const OFFLINE_PREFS = {
  "app.update.auto": false,
  "app.update.enabled": false,
  "app.update.disabledForTesting": true,
  "app.normandy.enabled": false,
  "app.normandy.api_url": "",
  "app.shield.optoutstudies.enabled": false,
  "browser.discovery.enabled": false,
  "browser.newtabpage.activity-stream.feeds.telemetry": false,
  "browser.newtabpage.activity-stream.telemetry": false,
  "browser.ping-centre.telemetry": false,
  "browser.region.network.url": "",
  "browser.region.update.enabled": false,
  "browser.safebrowsing.malware.enabled": false,
  "browser.safebrowsing.phishing.enabled": false,
  "browser.safebrowsing.downloads.enabled": false,
  "browser.safebrowsing.downloads.remote.enabled": false,
  "browser.safebrowsing.provider.google.updateURL": "",
  "browser.safebrowsing.provider.google4.updateURL": "",
  "browser.safebrowsing.provider.mozilla.updateURL": "",
  "browser.search.update": false,
  "browser.topsites.contile.enabled": false,
  "datareporting.healthreport.uploadEnabled": false,
  "datareporting.policy.dataSubmissionEnabled": false,
  "datareporting.usage.uploadEnabled": false,
  "extensions.getAddons.cache.enabled": false,
  "extensions.systemAddon.update.enabled": false,
  "extensions.update.enabled": false,
  "messaging-system.rsexperimentloader.enabled": false,
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "network.dns.disablePrefetch": true,
  "network.http.speculative-parallel-limit": 0,
  "network.prefetch-next": false,
  "network.trr.mode": 5,
  "services.settings.server": "http://dummy.test/dummy/blocklist/",
  "toolkit.telemetry.enabled": false,
  "toolkit.telemetry.unified": false,
  "toolkit.telemetry.archive.enabled": false,
  "toolkit.telemetry.server": "",
  "toolkit.telemetry.updatePing.enabled": false,
  "toolkit.telemetry.shutdownPingSender.enabled": false,
  "toolkit.telemetry.firstShutdownPing.enabled": false,
  "toolkit.telemetry.newProfilePing.enabled": false,
  "toolkit.telemetry.bhrPing.enabled": false,
};

/**
 * Prefs that make Firefox treat `http(s)://public.test:PORT` as a public web site served from
 * 127.0.0.1:PORT, for each of `ports`: the name resolves to loopback, an http origin counts as a
 * secure context (as an https site would), and the server's address is classified public for
 * Local Network Access.
 */
export function publicPagePrefs(...ports) {
  return {
    "network.dns.localDomains": PUBLIC_HOST,
    "dom.securecontext.allowlist": PUBLIC_HOST,
    // A comma-separated list of ip:port.
    "network.lna.address_space.public.override": ports.map((p) => `127.0.0.1:${p}`).join(","),
  };
}

/** Throws a clear error when Firefox ESR is not installed (tests must fail, not skip). */
export function requireFirefox() {
  if (!existsSync(FIREFOX)) {
    throw new Error(`Firefox ESR not found at ${FIREFOX}: apt-get install firefox-esr (see .ci/packages.txt), or set FIREFOX_BIN`);
  }
}

/**
 * Launch headless Firefox ESR on a fresh profile in `profileDir`, with `prefs` on top of
 * OFFLINE_PREFS; `env` adds to its environment (e.g. a private HOME for native-messaging host
 * manifests). Returns the puppeteer Browser.
 */
export async function launchFirefox({ profileDir, prefs = {}, acceptInsecureCerts = false, env = {} }) {
  requireFirefox();
  return puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    // For a test https site with a self-signed certificate (see serveHttpsPages).
    acceptInsecureCerts,
    userDataDir: profileDir,
    extraPrefsFirefox: { ...OFFLINE_PREFS, ...prefs },
    // Bounded: a Firefox that does not come up fails the test instead of hanging it.
    timeout: 30_000,
    protocolTimeout: 60_000,
    // No crash reporter: it would try to submit reports.
    env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: "1", ...env },
  });
}

/**
 * Serve `routes` (as pages.mjs `servePages` does) over HTTPS on 127.0.0.1 (port 0: any), with a
 * throw-away self-signed certificate for PUBLIC_HOST made by openssl in `dir`. Firefox must be
 * launched with `acceptInsecureCerts`. Resolves to `{ port, close() }`.
 */
export async function serveHttpsPages(routes, dir, port = 0) {
  const key = join(dir, "site-key.pem");
  const cert = join(dir, "site-cert.pem");
  await promisify(execFile)(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
      "-subj", `/CN=${PUBLIC_HOST}`, "-addext", `subjectAltName=DNS:${PUBLIC_HOST}`],
    { timeout: 30_000 },
  );
  const server = createServer({ key: await readFile(key), cert: await readFile(cert) }, (req, res) => {
    const route = routes[new URL(req.url, "https://x").pathname];
    if (!route) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": route.type, "cache-control": "no-store" }).end(route.body);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  return {
    port: server.address().port,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Set `origin`'s `loopback-network` permission ("granted", "denied" or "prompt") in the browser's
 * default context, through WebDriver BiDi `permissions.setPermission`.
 */
export async function setLoopbackPermission(browser, origin, state) {
  await browser.defaultBrowserContext().setPermission(origin, { permission: { name: "loopback-network" }, state });
}

/**
 * Where Firefox on Linux reads an administrator's policies: `/etc/firefox/policies/policies.json`
 * (SysConfD is /etc/firefox for Debian's firefox-esr too; /etc/firefox-esr/policies is NOT read).
 * One file for the whole machine, and only root may write it.
 */
export const FIREFOX_POLICY_FILE = "/etc/firefox/policies/policies.json";

/**
 * Run `fn` with `policies` in force for Firefox processes started meanwhile, then remove the file
 * and the folders this created. Refuses to replace a policies.json that is already there (it
 * belongs to the machine's administrator).
 */
export async function withFirefoxPolicies(policies, fn) {
  if (existsSync(FIREFOX_POLICY_FILE)) {
    throw new Error(`${FIREFOX_POLICY_FILE} exists: this test will not replace the administrator's Firefox policies`);
  }
  const created = [];
  for (const dir of [dirname(dirname(FIREFOX_POLICY_FILE)), dirname(FIREFOX_POLICY_FILE)]) {
    if (!existsSync(dir)) {
      await mkdir(dir).catch((e) => {
        throw new Error(`cannot create ${dir} (the Firefox policy test needs root): ${e.message}`);
      });
      created.unshift(dir);
    }
  }
  try {
    await writeFile(FIREFOX_POLICY_FILE, JSON.stringify({ policies }, null, 2));
    return await fn();
  } finally {
    await rm(FIREFOX_POLICY_FILE, { force: true });
    for (const dir of created) await rmdir(dir).catch(() => {});
  }
}

/**
 * Script for a probe page: `window.probeSocket(url, timeoutMs)` opens a WebSocket to `url` and
 * resolves with what the page can observe: the `loopback-network` permission state before and
 * after, whether the socket opened, whether the agent answered a JSON-RPC call, and how and when
 * (ms after `new WebSocket`) it closed. `window.probeFetch(url, timeoutMs)` does the same for a
 * no-cors fetch (the control: Firefox applies Local Network Access to fetch by default).
 */
export const PROBE_SCRIPT = `
async function permissionState() {
  try {
    return (await navigator.permissions.query({ name: "loopback-network" })).state;
  } catch (e) {
    return "query failed: " + e.name;
  }
}
window.probeSocket = async (url, timeoutMs) => {
  const before = await permissionState();
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const outcome = await new Promise((resolve) => {
    const r = { opened: false, answered: false, error: null, close: null, timedOut: false };
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      resolve({ ...r, thrown: e.name + ": " + e.message, at: ms() });
      return;
    }
    const timer = setTimeout(() => {
      r.timedOut = true;
      r.readyState = ws.readyState;
      resolve(r);
      try { ws.close(); } catch {}
    }, timeoutMs);
    ws.onopen = () => {
      r.opened = ms();
      ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "pkcs11.info", params: {} }));
    };
    ws.onmessage = (m) => {
      const reply = JSON.parse(m.data);
      r.answered = reply.id === 1 && ("result" in reply || "error" in reply) ? ms() : false;
      ws.close(1000, "probe done");
    };
    ws.onerror = () => {
      r.error = ms();
    };
    ws.onclose = (e) => {
      r.close = { code: e.code, wasClean: e.wasClean, reason: e.reason, at: ms() };
      clearTimeout(timer);
      resolve(r);
    };
  });
  return { origin: location.origin, secure: isSecureContext, before, after: await permissionState(), ...outcome };
};
window.probeFetch = async (url, timeoutMs) => {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(url, { mode: "no-cors", cache: "no-store", signal: ac.signal });
    return { ok: true, type: res.type, at: ms() };
  } catch (e) {
    return { ok: false, error: e.name + ": " + e.message, timedOut: ac.signal.aborted, at: ms() };
  } finally {
    clearTimeout(timer);
  }
};
document.getElementById("state").dataset.ready = "1";
`;

/** The probe page's HTML (loads PROBE_SCRIPT from /probe.js). */
export const PROBE_HTML = `<!doctype html><meta charset="utf-8"><title>probe</title>
<p id="state">loading</p><script src="/probe.js"></script>`;
