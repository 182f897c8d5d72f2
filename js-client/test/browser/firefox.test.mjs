// End to end in headless Firefox ESR (Debian's firefox-esr, driven by puppeteer-core over WebDriver
// BiDi; nothing downloaded): the demo page served by the agent, signatures verified with openssl,
// and a page from an origin the agent refuses. Then what Firefox does when a page on a *public*
// site opens ws://127.0.0.1 (measured on Firefox ESR 153, see docs/BROWSERS.md):
//
//   default prefs: Local Network Access is not applied to WebSockets. The socket opens with no
//     prompt although navigator.permissions says "prompt" (and even when the permission is
//     "denied"), also from an https page (not mixed content); fetch() to 127.0.0.1 from the same
//     page IS held for the prompt.
//   network.lna.websocket.enabled=true (as Chrome 147+ does for WebSockets):
//     (a) no answer: the socket waits for the person until Firefox's WebSocket open timeout
//         (network.websocket.timeout.open, 20 s; 3 s here) and closes 1006; the agent never
//         gets the handshake;
//     (b) granted: the whole flow;  (c) denied: 1006 at once;
//     the client cannot tell (a) from an agent that is not running (Firefox reads `prompt` for
//     every undecided site and, by default, lets the socket through whatever the permission
//     says), so (a) is AGENT_UNAVAILABLE ("nobody answered"); (c), where the permission reads
//     `denied` before the attempt, is LOCAL_NETWORK_BLOCKED: the person's explicit Block is what
//     they can change (its description adds that the agent may also not be running); so is a
//     change to `denied` while it connects (the person clicked Block);
//     (d) the administrator's policy LocalNetworkAccess.SkipDomains: no prompt at all.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { JS_CLIENT, KEYS, PIN, freePort, provisionToken, readCert, startAgent, tempDir } from "../helpers/agent.mjs";
import {
  PROBE_HTML,
  PROBE_SCRIPT,
  launchFirefox,
  publicPagePrefs,
  requireFirefox,
  serveHttpsPages,
  setLoopbackPermission,
  withFirefoxPolicies,
} from "../helpers/firefox.mjs";
import { PUBLIC_HOST, demoRoutes, servePages } from "../helpers/pages.mjs";
import { opensslVerify } from "../helpers/verify.mjs";

/** network.websocket.timeout.open (seconds) in the browsers with LNA for WebSockets: Firefox's default is 20. */
const OPEN_TIMEOUT_S = 3;
const WAIT_MS = 20_000;

let tmp;
let token;
let agent;
let site; // the "public" web site: the demo page and the probe page
let siteOrigin;
let httpsSite; // the same pages over https (self-signed), also public
let httpsOrigin;
let foreign; // a page the agent does not allow: on 127.0.0.1, and public as public.test
let firefox; // default prefs, with the site classified public

before(async () => {
  requireFirefox();
  assert.ok(existsSync(join(JS_CLIENT, "demo/keyport-client.js")), "run `npm run build` first (it emits demo/keyport-client.js)");
  tmp = await tempDir();
  token = await provisionToken(join(tmp.dir, "token"));
  const bundle = await readFile(join(JS_CLIENT, "demo/keyport-client.js"));
  const routes = {
    ...(await demoRoutes()),
    "/probe": { type: "text/html; charset=utf-8", body: PROBE_HTML },
    "/probe.js": { type: "text/javascript", body: PROBE_SCRIPT },
  };
  site = await servePages(routes);
  siteOrigin = `http://${PUBLIC_HOST}:${site.port}`;
  httpsSite = await serveHttpsPages(routes, tmp.dir);
  httpsOrigin = `https://${PUBLIC_HOST}:${httpsSite.port}`;
  foreign = await servePages({
    "/": { type: "text/html; charset=utf-8", body: foreignPage() },
    "/keyport-client.js": { type: "text/javascript", body: bundle },
  });
  const port = await freePort();
  agent = await startAgent({
    conf: token.conf,
    port,
    // The site is trusted (no consent prompt: none can be answered here).
    args: [
      "--demo", "--demo-dir", join(JS_CLIENT, "demo"),
      "--trust-origin", `http://127.0.0.1:${port}`, "--trust-origin", siteOrigin, "--trust-origin", httpsOrigin,
    ],
    // Connections are logged at debug: the tests read whether the site's handshake arrived.
    env: { RUST_LOG: "info,keyport::server=debug" },
  });
  assert.equal(agent.demoUrl, `http://127.0.0.1:${port}/demo`);
  firefox = await launchFirefox({
    profileDir: join(tmp.dir, "profile"),
    // The foreign server is public too when reached as public.test (see the todo test below).
    prefs: publicPagePrefs(site.port, httpsSite.port, foreign.port),
    acceptInsecureCerts: true,
  });
});

after(async () => {
  await firefox?.close();
  await agent?.stop();
  await site?.close();
  await httpsSite?.close();
  await foreign?.close();
  await tmp?.cleanup();
});

// ---- page helpers (puppeteer) ----

const attr = (page, sel, name) => page.$eval(sel, (e, n) => e.getAttribute(n), name);
const text = (page, sel) => page.$eval(sel, (e) => e.textContent);
const shownError = (page) => page.$eval("#error", (e) => (e.hidden ? null : e.textContent));

async function fill(page, sel, value) {
  await page.$eval(
    sel,
    (e, v) => {
      e.value = v;
      e.dispatchEvent(new Event("input", { bubbles: true }));
    },
    value,
  );
}

/** Open the demo page at `url` in `browser`; wait until it has connected or failed. */
async function openDemo(browser, url) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const started = Date.now();
  await page.goto(url);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: WAIT_MS });
  return {
    page,
    errors,
    ms: Date.now() - started,
    status: await attr(page, "#status", "data-state"),
    reason: await attr(page, "#error", "data-reason"),
    error: await shownError(page),
    permission: await attr(page, "#permission", "data-state"),
  };
}

const publicDemoUrl = () => `${siteOrigin}/demo/?agent=${encodeURIComponent(agent.url)}`;

/** Sign `textToSign` with certificate `certId` in the demo page; returns what the page shows. */
async function signInPage(page, certId, textToSign, pin = PIN) {
  await page.click(`#cert-${certId}`);
  assert.equal(await page.$eval(`#cert-${certId}`, (e) => e.checked), true);
  await fill(page, "#text", textToSign);
  await fill(page, "#pin", pin);
  await page.click("#sign");
  await page.waitForSelector('#result[data-state="signed"], #result[data-state="error"]', { timeout: WAIT_MS });
  return {
    state: await attr(page, "#result", "data-state"),
    digest: (await text(page, "#digest")).trim(),
    signature: (await text(page, "#signature")).trim(),
    valid: await attr(page, "#verify-result", "data-valid"),
    error: await shownError(page),
    reason: await attr(page, "#error", "data-reason"),
  };
}

/** Sign in the page and check the signature with openssl against the token's certificate. */
async function signAndVerify(page, key, textToSign) {
  const shown = await signInPage(page, key.id, textToSign);
  assert.equal(shown.state, "signed", shown.error ?? "");
  const digest = createHash("sha256").update(textToSign).digest();
  assert.equal(shown.digest, digest.toString("base64"), "the page hashed the text with WebCrypto");
  const signature = Buffer.from(shown.signature, "base64");
  assert.ok(signature.length > 0);
  const ok = await opensslVerify({ certDer: await readCert(token.certsDir, key), digest, signature, algorithm: "sha256" });
  assert.equal(ok, true, `openssl verifies the ${key.cn} signature shown in the page`);
  assert.equal(shown.valid, "true", "the page shows the agent's verification");
}

/** How many connections from the public site (`origin`) the agent logged. */
function siteConnections(origin = siteOrigin) {
  return agent
    .log()
    .split("\n")
    .filter((l) => / connected/.test(l) && l.includes(origin)).length;
}

/** Open the probe page on the public site (`origin`) in `browser`. */
async function openProbe(browser, origin = siteOrigin) {
  const page = await browser.newPage();
  await page.goto(`${origin}/probe`);
  await page.waitForSelector("#state[data-ready]", { timeout: WAIT_MS });
  return page;
}

/** A raw WebSocket to the agent from `page` (see PROBE_SCRIPT): what the page observes. */
const probeSocket = (page) => page.evaluate((url, ms) => window.probeSocket(url, ms), agent.url, WAIT_MS);
/** A no-cors fetch to the agent's HTTP side from `page`, abandoned after `ms`. */
const probeFetch = (page, ms) => page.evaluate((url, t) => window.probeFetch(url, t), `http://127.0.0.1:${agent.port}/demo/demo.css`, ms);

/** KeyportClient.initialize from `page` (the built bundle the demo page uses): how it ends, and when. */
function initializeIn(page, config = {}) {
  return page.evaluate(
    async ({ url, config }) => {
      const { KeyportClient } = await import("/demo/keyport-client.js");
      const statuses = [];
      const started = performance.now();
      try {
        const client = await KeyportClient.initialize({ url, ...config, onStatus: (s) => statuses.push(s) });
        const info = (await client.pkcs11().info()).data;
        client.close();
        return { connected: true, info, statuses, ms: performance.now() - started };
      } catch (e) {
        return { connected: false, error: { ...e }, statuses, ms: performance.now() - started };
      }
    },
    { url: agent.url, config },
  );
}

function foreignPage() {
  return `<!doctype html><meta charset="utf-8"><title>foreign</title><pre id="out">pending</pre>
<script type="module">
  import { KeyportClient } from "/keyport-client.js";
  const out = document.getElementById("out");
  const url = new URLSearchParams(location.search).get("agent");
  try {
    const client = await KeyportClient.initialize({ url, connectTimeout: 5000 });
    out.textContent = JSON.stringify({ connected: true, info: (await client.pkcs11().info()).data });
  } catch (e) {
    out.textContent = JSON.stringify(e);
  }
  out.dataset.done = "1";
</script>`;
}

// ---- the demo flow ----

describe("Firefox ESR: the demo page served by the agent", () => {
  let shown;
  before(async () => {
    shown = await openDemo(firefox, agent.demoUrl);
  });
  after(async () => {
    await shown?.page.close();
  });

  test("connects and lists slots, tokens and parsed certificates", async () => {
    const { page } = shown;
    assert.equal(shown.status, "ready", shown.error ?? "");
    assert.equal(shown.permission, "none", "a page on 127.0.0.1 needs no permission");
    const table = await text(page, "#slots");
    assert.match(table, /keyport-demo/);
    assert.match(table, /keyport-empty/);
    const selected = await page.$eval("#token-select", (s) => s.options[s.selectedIndex].textContent);
    assert.match(selected, /^keyport-demo/);
    assert.equal(await attr(page, "#certs", "data-state"), "ready");
    const certs = await text(page, "#certs");
    for (const key of KEYS) assert.match(certs, new RegExp(key.cn));
    assert.match(certs, /Key: RSA 2048/);
    assert.match(certs, /Key: EC P-256/);
    assert.match(certs, /Issuer: .*O=Keyport Demo/);
    assert.equal((await page.$$('#certs input[name="cert"]')).length, KEYS.length + 1); // and the orphan
    assert.deepEqual(shown.errors, []);
  });

  for (const key of KEYS) {
    test(`signs with ${key.cn}; openssl verifies the signature shown in the page`, async () => {
      await signAndVerify(shown.page, key, `Signed in Firefox with ${key.cn} at ${new Date().toISOString()}`);
    });
  }

  test("a wrong PIN is shown as PIN_INCORRECT, and the right one signs again", async () => {
    const wrong = await signInPage(shown.page, "02", "wrong pin", "9999");
    assert.equal(wrong.state, "error");
    assert.equal(wrong.reason, "PIN_INCORRECT");
    await signAndVerify(shown.page, KEYS[1], "right pin again");
    assert.equal(await shownError(shown.page), null, "the error is cleared");
    assert.deepEqual(shown.errors, []);
  });
});

test("Firefox ESR: a page from an origin the agent does not allow gets AGENT_UNAVAILABLE", async () => {
  const origin = `http://127.0.0.1:${foreign.port}`;
  const page = await firefox.newPage();
  try {
    await page.goto(`${origin}/?agent=${encodeURIComponent(agent.url)}`);
    await page.waitForSelector("#out[data-done]", { timeout: WAIT_MS });
    const reported = JSON.parse(await text(page, "#out"));
    assert.equal(reported.connected, undefined, "the agent must not accept this origin");
    assert.equal(reported.reason, "AGENT_UNAVAILABLE");
    assert.equal(reported.code, 2001);
    assert.equal(reported.source, "client");
    const refusals = agent.log().split("\n").filter((l) => l.includes("handshake refused") && l.includes(origin));
    assert.ok(refusals.length >= 1, `no logged refusal of ${origin} in:\n${agent.log()}`);
    assert.match(refusals[0], /Origin not allowed/);
  } finally {
    await page.close();
  }
});

test(
  "Firefox ESR: a public page whose origin the agent refuses gets AGENT_UNAVAILABLE",
  async () => {
    const origin = `http://${PUBLIC_HOST}:${foreign.port}`;
    const page = await firefox.newPage();
    try {
      await page.goto(`${origin}/?agent=${encodeURIComponent(agent.url)}`);
      await page.waitForSelector("#out[data-done]", { timeout: WAIT_MS });
      const reported = JSON.parse(await text(page, "#out"));
      const refused = agent.log().split("\n").some((l) => l.includes("handshake refused") && l.includes(origin));
      assert.ok(refused, "the agent refused the handshake (the browser let it through)");
      assert.equal(reported.reason, "AGENT_UNAVAILABLE", JSON.stringify(reported));
    } finally {
      await page.close();
    }
  },
);

// ---- a page on a public site ----

describe("Firefox ESR, default prefs: a page on a public site opening ws://127.0.0.1", () => {
  test("the socket opens with no prompt, although the permission reads `prompt`", async () => {
    const before = siteConnections();
    const page = await openProbe(firefox);
    try {
      const r = await probeSocket(page);
      assert.equal(r.origin, siteOrigin);
      assert.equal(r.secure, true, "the site is a secure context (as an https site is)");
      assert.equal(r.before, "prompt");
      assert.equal(r.after, "prompt", "no prompt was answered: none was shown");
      assert.equal(typeof r.opened, "number", JSON.stringify(r));
      assert.equal(typeof r.answered, "number", "the agent answered a JSON-RPC call");
      assert.equal(r.close?.code, 1000);
    } finally {
      await page.close();
    }
    assert.ok(siteConnections() > before, "the agent saw the site's connection");
  });

  test("the demo page on the public site connects, lists and signs (P-256), openssl verifies", async () => {
    const shown = await openDemo(firefox, publicDemoUrl());
    try {
      assert.equal(shown.status, "ready", shown.error ?? "");
      assert.equal(shown.permission, "prompt", "the page shows the state Firefox reports");
      assert.match(await text(shown.page, "#slots"), /keyport-demo/);
      await signAndVerify(shown.page, KEYS[1], `Signed on ${siteOrigin} in Firefox`);
      const direct = await initializeIn(shown.page);
      assert.equal(direct.connected, true, JSON.stringify(direct.error));
      assert.deepEqual(direct.statuses, ["connecting", "connected"]);
      assert.deepEqual(shown.errors, []);
    } finally {
      await shown.page.close();
    }
  });

  test("from an https page too: ws://127.0.0.1 is not mixed content, and opens", async () => {
    const before = siteConnections(httpsOrigin);
    const page = await openProbe(firefox, httpsOrigin);
    try {
      const r = await probeSocket(page);
      assert.equal(r.origin, httpsOrigin);
      assert.equal(r.secure, true);
      assert.equal(r.before, "prompt");
      assert.equal(typeof r.opened, "number", JSON.stringify(r));
      assert.equal(typeof r.answered, "number", "the agent answered a JSON-RPC call");
    } finally {
      await page.close();
    }
    assert.ok(siteConnections(httpsOrigin) > before, "the agent saw the https site's connection");
  });

  test("the site is public to Firefox: denied, fetch() to 127.0.0.1 fails at once, yet the WebSocket opens", async () => {
    await setLoopbackPermission(firefox, siteOrigin, "denied");
    const page = await openProbe(firefox);
    try {
      const f = await probeFetch(page, WAIT_MS);
      assert.equal(f.ok, false, "Local Network Access applies to fetch");
      assert.equal(f.timedOut, false, JSON.stringify(f));
      assert.match(f.error, /TypeError/);
      assert.ok(f.at < 2_000, `fetch took ${f.at} ms`);
      const r = await probeSocket(page);
      assert.equal(r.before, "denied");
      assert.equal(typeof r.opened, "number", `by default Firefox does not apply it to WebSockets: ${JSON.stringify(r)}`);
      assert.equal(r.close?.code, 1000);
    } finally {
      await page.close();
      await setLoopbackPermission(firefox, siteOrigin, "prompt");
    }
  });
});

describe("Firefox ESR with network.lna.websocket.enabled (Local Network Access for WebSockets)", () => {
  let lna;
  before(async () => {
    lna = await launchFirefox({
      profileDir: join(tmp.dir, "profile-lna"),
      prefs: {
        ...publicPagePrefs(site.port),
        "network.lna.websocket.enabled": true,
        "network.websocket.timeout.open": OPEN_TIMEOUT_S,
      },
    });
  });
  after(async () => {
    await lna?.close();
  });

  test("(a) no answer: the socket waits, closes 1006 at the open timeout; the agent never sees it", async () => {
    const before = siteConnections();
    const page = await openProbe(lna);
    try {
      // One after the other: Firefox holds a page's second socket to the same agent until the
      // first one stops connecting (RFC 6455 4.1), which would add the two waits up.
      const r = await probeSocket(page);
      assert.equal(r.before, "prompt");
      assert.equal(r.opened, false, JSON.stringify(r));
      assert.equal(r.timedOut, false, "Firefox closed it, not the probe");
      assert.equal(r.close.code, 1006);
      assert.ok(
        r.close.at >= OPEN_TIMEOUT_S * 1000 - 500 && r.close.at < OPEN_TIMEOUT_S * 1000 + 5_000,
        `closed after ${r.close.at} ms, expected about ${OPEN_TIMEOUT_S} s (network.websocket.timeout.open)`,
      );
      const direct = await initializeIn(page);
      assert.equal(direct.connected, false);
      // Indistinguishable from no agent in Firefox (see the top of this file).
      assert.equal(direct.error.reason, "AGENT_UNAVAILABLE", JSON.stringify(direct.error));
      assert.deepEqual(direct.statuses, ["connecting"]);
      assert.ok(direct.ms < OPEN_TIMEOUT_S * 1000 + 5_000, `the client took ${direct.ms} ms`);
    } finally {
      await page.close();
    }
    assert.equal(siteConnections(), before, "the handshake never reached the agent");
  });

  test("(c) denied: the socket closes 1006 at once; the client says LOCAL_NETWORK_BLOCKED", async () => {
    await setLoopbackPermission(lna, siteOrigin, "denied");
    const page = await openProbe(lna);
    try {
      const r = await probeSocket(page);
      assert.equal(r.before, "denied");
      assert.equal(r.opened, false);
      assert.equal(r.close.code, 1006);
      assert.ok(r.close.at < 2_000, `closed after ${r.close.at} ms`);
      const direct = await initializeIn(page);
      assert.equal(direct.error.reason, "LOCAL_NETWORK_BLOCKED", JSON.stringify(direct.error));
      assert.equal(direct.error.code, 2002);
      assert.match(direct.error.description, /set to block/);
      assert.match(direct.error.description, /site settings/, "it says where to allow it");
      assert.deepEqual(direct.statuses, ["connecting"], "Firefox may let it through: it is tried");
      assert.ok(direct.ms < 2_000, `the client took ${direct.ms} ms`);
    } finally {
      await page.close();
    }
  });

  test("(b) granted: the socket opens; the demo page lists and signs (RSA), openssl verifies", async () => {
    await setLoopbackPermission(lna, siteOrigin, "granted");
    const page = await openProbe(lna);
    try {
      const r = await probeSocket(page);
      assert.equal(r.before, "granted");
      assert.equal(typeof r.opened, "number", JSON.stringify(r));
      assert.equal(r.close.code, 1000);
    } finally {
      await page.close();
    }
    const shown = await openDemo(lna, publicDemoUrl());
    try {
      assert.equal(shown.status, "ready", shown.error ?? "");
      assert.equal(shown.permission, "granted");
      assert.match(await text(shown.page, "#certs"), /Keyport Demo RSA-2048/);
      await signAndVerify(shown.page, KEYS[0], `Signed on ${siteOrigin} in Firefox with LNA for WebSockets`);
      assert.deepEqual(shown.errors, []);
    } finally {
      await shown.page.close();
    }
  });

  test("(d) the administrator's policy LocalNetworkAccess.SkipDomains lets the site connect with no prompt", async () => {
    await withFirefoxPolicies({ LocalNetworkAccess: { SkipDomains: [PUBLIC_HOST] } }, async () => {
      const managed = await launchFirefox({
        profileDir: join(tmp.dir, "profile-managed"),
        prefs: {
          ...publicPagePrefs(site.port),
          "network.lna.websocket.enabled": true,
          "network.websocket.timeout.open": OPEN_TIMEOUT_S,
        },
      });
      try {
        const shown = await openDemo(managed, publicDemoUrl());
        try {
          assert.equal(shown.status, "ready", shown.error ?? "");
          // Unlike Chrome's policy, Firefox's does not show as a grant. (Had Firefox held the
          // socket for a prompt, it would have failed after OPEN_TIMEOUT_S and the page would show an error.)
          assert.equal(shown.permission, "prompt");
          assert.match(await text(shown.page, "#slots"), /keyport-demo/);
        } finally {
          await shown.page.close();
        }
      } finally {
        await managed.close();
      }
    });
  });
});
