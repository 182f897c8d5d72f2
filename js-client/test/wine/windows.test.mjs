// Keyport on Windows, end to end under Wine (issue 21): the MSI installed silently into a fresh
// Wine prefix, the installed keyport.exe started as a person's login would start it, the test
// token DLL (tests/soft-token) as the page's `win` library, and Linux Chromium on a public site
// (loopback permission granted) as the browser. The agent's own Windows dialogs appear on a
// private X display; xdotool answers them as the person would; openssl on Linux verifies the
// signatures. Then: Deny, no answer in time, a wrong PIN, the PIN pad, a crashing library, and
// the uninstaller (which leaves the administrator's policy alone).
//
// Run by scripts/test-windows.sh, which builds what it needs and sets:
//   KEYPORT_MSI             the installer (scripts/build-msi.sh)
//   KEYPORT_SOFT_TOKEN_DLL  tests/soft-token built for x86_64-pc-windows-gnu
// UPDATE_SCREENSHOT=1 writes each dialog's screenshot into docs/ (needs ImageMagick's `import`, which
// the CI lists leave out; a machine busy with other work may catch a window half drawn: look).
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import { JS_CLIENT, REPO, freePort, tempDir } from "../helpers/agent.mjs";
import { PUBLIC_HOST, demoRoutes, servePages } from "../helpers/pages.mjs";
import { opensslVerify } from "../helpers/verify.mjs";
import { startXvfb } from "../helpers/xvfb.mjs";

const run = promisify(execFile);
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const MSI = process.env.KEYPORT_MSI;
const TOKEN_DLL = process.env.KEYPORT_SOFT_TOKEN_DLL;
const WINE_RUN = join(REPO, "scripts/wine-run.sh");
const SCREENSHOTS = process.env.UPDATE_SCREENSHOT === "1" ? join(REPO, "docs") : null;
const PIN = "246810";
/** Where the test puts the token, as the page names it (the `win` entry of its module config). */
const WIN_MODULE = "C:\\Keyport-test\\keyport_soft_token.dll";
const INSTALLED_EXE = "C:\\Program Files\\Keyport\\keyport.exe";
/**
 * The consent prompt's timeout (s): short, so that "no answer" is tested in bounded time, but
 * long enough for the PIN case (wrong PIN typed, the dialog back, the right one typed: one prompt
 * throughout), which took 13.8 s in a CI run on 2 cores and timed out at 12.
 */
const CONSENT_SECS = 25;
const KEYS = [
  { id: "01", label: "rsa", cn: "Keyport Soft RSA" },
  { id: "02", label: "ec", cn: "Keyport Soft EC" },
];
const CONSENT_TITLE = "Keyport: allow signing?";
const PIN_TITLE = "Keyport: PIN";
const PIN_PAD_TITLE = "Keyport: type your PIN on the reader";
/** The dialogs ignore a yes in their first 600 ms (INPUT_GUARD): the person reads first. */
const READ_MS = 1_000;
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
let xvfb;
let prefix;
let drive;
let tokenDir;
let agent;
let site;
let siteOrigin;
let context;
let port;

/** A Unix path as Wine's Z: drive names it. */
const winPath = (p) => `Z:${p.replaceAll("/", "\\")}`;

/** Run a Windows program under Wine in the test's prefix, on the test's display. */
function wine(args, { timeout = 120_000 } = {}) {
  return run(WINE_RUN, args, { env: wineEnv(), timeout });
}

function wineEnv() {
  // LANG=C.UTF-8: Wine's UI language is then en-US, so the dialogs speak English (this test finds
  // them by their English titles) whatever the machine's locale.
  const env = { ...xvfb.env, KEYPORT_WINEPREFIX: prefix, WINEDEBUG: "-all", LANG: "C.UTF-8" };
  // The agent must not reach the Linux desktop of whoever runs the tests.
  for (const name of ["DBUS_SESSION_BUS_ADDRESS", "WAYLAND_DISPLAY", "LANGUAGE", "LC_ALL", "LC_MESSAGES"]) {
    delete env[name];
  }
  return env;
}

/** Start the installed agent; resolves once it listens. */
async function startInstalledAgent() {
  const child = spawn(WINE_RUN, [INSTALLED_EXE, "--listen", `127.0.0.1:${port}`], {
    env: { ...wineEnv(), RUST_LOG: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the agent did not start in 60 s:\n${log}`)), 60_000);
    const check = () => {
      if (/listening on ws:\/\//.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", check);
    child.stderr.on("data", check);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the agent exited (${code ?? signal}):\n${log}`));
    });
  });
  return {
    url: `ws://127.0.0.1:${port}`,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

before(async () => {
  assert.ok(MSI && existsSync(MSI), `KEYPORT_MSI (the installer) not found: ${MSI}; run scripts/test-windows.sh`);
  assert.ok(TOKEN_DLL && existsSync(TOKEN_DLL), `KEYPORT_SOFT_TOKEN_DLL not found: ${TOKEN_DLL}`);
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}`);
  tmp = await tempDir("keyport-wine-");
  xvfb = await startXvfb({ width: 1100, height: 800 });
  // A fresh prefix: a machine Keyport was never installed on.
  prefix = join(tmp.dir, "prefix");
  drive = join(prefix, "drive_c");
  await wine(["msiexec", "/i", winPath(MSI), "/qn"]);
  assert.ok(existsSync(join(drive, "Program Files/Keyport/keyport.exe")), "the MSI installed keyport.exe");

  // The token: the DLL and its files beside it (keyport_soft_token.d), provisioned with openssl.
  await mkdir(join(drive, "Keyport-test"), { recursive: true });
  await copyFile(TOKEN_DLL, join(drive, "Keyport-test/keyport_soft_token.dll"));
  tokenDir = join(drive, "Keyport-test/keyport_soft_token.d");
  await run(join(REPO, "tests/soft-token/provision.sh"), [tokenDir, PIN], { timeout: 60_000 });

  site = await servePages(await demoRoutes());
  siteOrigin = `http://${PUBLIC_HOST}:${site.port}`;
  port = await freePort();
  // The administrator's policy, where Windows keeps it: the library and the site.
  await mkdir(join(drive, "ProgramData/Keyport"), { recursive: true });
  await writeFile(
    join(drive, "ProgramData/Keyport/keyport.toml"),
    [
      `modules = ['${WIN_MODULE}']`,
      `allow_origins = ["${siteOrigin}"]`,
      `consent_timeout_secs = ${CONSENT_SECS}`,
      "",
    ].join("\n"),
  );
  agent = await startInstalledAgent();

  context = await chromium.launchPersistentContext(join(tmp.dir, "profile"), {
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
  const cdp = await context.newCDPSession(context.pages()[0] ?? (await context.newPage()));
  // The person allowed this site to reach their computer (Local Network Access).
  await cdp.send("Browser.setPermission", {
    permission: { name: "loopback-network" },
    setting: "granted",
    origin: siteOrigin,
  });
});

after(async () => {
  await context?.close();
  await agent?.stop();
  await site?.close();
  if (prefix) await run(join(REPO, "scripts/wine-prefix.sh"), ["--kill", prefix]).catch(() => {});
  await xvfb?.stop();
  await tmp?.cleanup();
});

/**
 * The demo page on the public site, in a browser that reports Windows (as Chromium on Windows
 * does), so that the client sends the page's `win` library. The `linux` entry names a library
 * the agent does not allow: had the client sent it, every call would fail.
 */
async function openDemo() {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Emulation.setUserAgentOverride", {
    userAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
    platform: "Win32",
    userAgentMetadata: {
      platform: "Windows",
      platformVersion: "10.0.0",
      architecture: "x86",
      model: "",
      mobile: false,
      brands: [{ brand: "Chromium", version: "156" }],
    },
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const query = new URLSearchParams({ agent: agent.url, win: WIN_MODULE, linux: "/not/allowed.so" });
  await page.goto(`${siteOrigin}/demo/?${query}`);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 60_000 });
  return { page, errors };
}

/** Start signing `text` with `certId` by `pinPath` ("page", "agent" or "reader"); returns a promise of the outcome. */
async function startSigning(page, { slot = 0, certId, text, pinPath = "page", pin = PIN }) {
  await page.selectOption("#token-select", String(slot));
  await page.waitForSelector(`#cert-${certId}`, { timeout: 30_000 });
  await page.check(`#cert-${certId}`);
  await page.selectOption("#pin-path", pinPath);
  if (pinPath === "page") await page.fill("#pin", pin);
  await page.fill("#text", text);
  await page.click("#sign");
  return (async () => {
    await page.waitForSelector('#result[data-state="signed"], #result[data-state="error"]', { timeout: 90_000 });
    return {
      state: await page.getAttribute("#result", "data-state"),
      // Still the certificate asked for (a list read again while signing keeps the choice).
      cert: await page.$eval('input[name="cert"]:checked', (i) => i.value).catch(() => null),
      signature: (await page.textContent("#signature")).trim(),
      reason: await page.getAttribute("#error", "data-reason"),
      error: (await page.isVisible("#error")) ? await page.textContent("#error") : null,
    };
  })();
}

/** xdotool's --name is a regular expression: the title, matched exactly. */
const titleRegex = (title) => `^${title.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`;

/** The X window id of the Wine window titled `title`, once it is shown (at most `ms`). */
async function dialog(title, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = await xvfb.xdotool("search", "--onlyvisible", "--name", titleRegex(title)).then(
      (r) => r.stdout.trim().split("\n").filter(Boolean),
      () => [],
    );
    if (found.length) {
      await new Promise((r) => setTimeout(r, READ_MS));
      return found[found.length - 1];
    }
    if (Date.now() > deadline) throw new Error(`no window "${title}" within ${ms} ms:\n${agent.log()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Whether a window titled `title` is shown now. */
async function shown(title) {
  return xvfb.xdotool("search", "--onlyvisible", "--name", titleRegex(title)).then(
    (r) => r.stdout.trim() !== "",
    () => false,
  );
}

/** Keys to the window `id`, as the person types them (it is raised and focused first). */
async function press(id, ...keys) {
  await xvfb.xdotool("windowactivate", "--sync", id).catch(() => {});
  await xvfb.xdotool("windowfocus", "--sync", id).catch(() => {});
  for (const k of keys) {
    if (k.type) await xvfb.xdotool("type", "--delay", "40", k.type);
    else await xvfb.xdotool("key", "--delay", "60", k);
  }
}

/** Whether the window titled `title` is gone within `ms` (Wine takes a moment to withdraw one
 * without a window manager). */
async function gone(title, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (await shown(title)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
  return true;
}

/** The window `id` alone, as docs/`name` (with UPDATE_SCREENSHOT=1). */
async function screenshot(name, id) {
  if (!SCREENSHOTS) return;
  await run("import", ["-display", xvfb.display, "-window", id, join(SCREENSHOTS, name)]);
}

async function verify(certId, text, signature, used = certId) {
  assert.equal(used, certId, "the page signed with the certificate the test chose");
  const certDer = await readFile(join(tokenDir, "keys", `${certId}-${KEYS.find((k) => k.id === certId).label}.crt`));
  const digest = createHash("sha256").update(text).digest();
  return opensslVerify({ certDer, digest, signature: Buffer.from(signature, "base64"), algorithm: "sha256" });
}

describe("Keyport on Windows (Wine): installed by its MSI, used from a public site", () => {
  let page;
  before(async () => {
    ({ page } = await openDemo());
  });
  after(async () => page?.close());

  test("the page lists the token's certificates through its `win` library", async () => {
    assert.equal(await page.getAttribute("#status", "data-state"), "ready", (await page.textContent("#error")) + agent.log());
    const slots = await page.textContent("#slots");
    assert.match(slots, /Keyport Soft Token/);
    assert.match(slots, /Keyport Soft PIN-pad/);
    const certs = await page.textContent("#certs");
    for (const key of KEYS) assert.match(certs, new RegExp(key.cn));
  });

  for (const key of KEYS) {
    test(`${key.cn}: the consent dialog names the site; Allow signs; openssl verifies`, async () => {
      const text = `Signed under Wine with ${key.cn} at ${new Date().toISOString()}`;
      const outcome = startSigning(page, { certId: key.id, text });
      const id = await dialog(CONSENT_TITLE);
      if (key.id === "01") await screenshot("windows-consent.png", id);
      await press(id, "alt+a");
      const result = await outcome;
      assert.equal(result.state, "signed", result.error ?? "");
      assert.equal(await verify(key.id, text, result.signature, result.cert), true, "openssl verifies the signature");
      assert.ok(await gone(CONSENT_TITLE), "the dialog is gone");
      // The agent knew the page by the origin its browser gave.
      assert.match(agent.log(), new RegExp(`signature made origin="${siteOrigin}"`));
    });
  }

  test("Deny: CONSENT_DENIED, and nothing is signed", async () => {
    const outcome = startSigning(page, { certId: "01", text: "to be denied" });
    await press(await dialog(CONSENT_TITLE), "alt+d");
    const result = await outcome;
    assert.equal(result.reason, "CONSENT_DENIED", result.error ?? "");
    assert.equal(result.signature, "");
    assert.ok(await gone(CONSENT_TITLE), "the dialog is gone");
  });

  test("no answer in time: CONSENT_TIMEOUT, and the dialog withdraws itself", async () => {
    const started = Date.now();
    const outcome = startSigning(page, { certId: "02", text: "nobody answers" });
    await dialog(CONSENT_TITLE);
    const result = await outcome;
    assert.equal(result.reason, "CONSENT_TIMEOUT", result.error ?? "");
    const waited = (Date.now() - started) / 1000;
    assert.ok(waited >= CONSENT_SECS - 1 && waited < CONSENT_SECS + 20, `answered after ${waited} s`);
    assert.ok(await gone(CONSENT_TITLE), "the dialog was withdrawn");
  });

  test("the agent's PIN dialog: a wrong PIN is said, with the tries left; the right one signs", async () => {
    const text = "PIN typed in the agent's own window";
    const outcome = startSigning(page, { certId: "01", text, pinPath: "agent" });
    let id = await dialog(PIN_TITLE);
    await press(id, { type: "000000" }, "Return");
    // The dialog comes back, saying why.
    id = await dialog(PIN_TITLE);
    const name = await xvfb.xdotool("getwindowname", id).then((r) => r.stdout.trim());
    assert.equal(name, PIN_TITLE);
    await screenshot("windows-pin.png", id);
    await press(id, { type: PIN }, "Return");
    const result = await outcome;
    assert.equal(result.state, "signed", result.error ?? "");
    assert.equal(await verify("01", text, result.signature, result.cert), true);
    assert.ok(await gone(PIN_TITLE), "the dialog is gone");
  });

  test("the PIN pad: the agent says to use the reader's keypad; the pad's PIN signs", async () => {
    const text = "PIN typed on the reader's keypad";
    const outcome = startSigning(page, { slot: 1, certId: "02", text, pinPath: "reader" });
    // Consent first (the page sends no PIN to the keypad path), then the keypad notice.
    await press(await dialog(CONSENT_TITLE), "alt+a");
    await screenshot("windows-pin-pad.png", await dialog(PIN_PAD_TITLE));
    await writeFile(join(tokenDir, "pinpad-pin"), PIN);
    const result = await outcome;
    assert.equal(result.state, "signed", result.error ?? "");
    assert.equal(await verify("02", text, result.signature, result.cert), true);
    assert.ok(await gone(PIN_PAD_TITLE), "the notice is gone");
  });

  test("Always allow this site: remembered for the page's real origin; the next signature asks nobody", async () => {
    const first = startSigning(page, { certId: "01", text: "always, from now on" });
    await press(await dialog(CONSENT_TITLE), "alt+w");
    assert.equal((await first).state, "signed");
    assert.ok(await gone(CONSENT_TITLE), "the dialog is gone");
    const state = join(drive, "users", userInfo().username, "AppData/Local/Keyport/state.json");
    assert.deepEqual(JSON.parse(await readFile(state, "utf8")).always_allow, [siteOrigin]);
    const text = "no dialog this time";
    const result = await startSigning(page, { certId: "02", text });
    assert.equal(result.state, "signed", result.error ?? "");
    assert.equal(await verify("02", text, result.signature, result.cert), true);
    assert.equal(await shown(CONSENT_TITLE), false, "no dialog was shown");
    // Forget it again, for the tests after this one: the agent reads the file at start.
    await agent.stop();
    await rm(state);
    agent = await startInstalledAgent();
    await page.reload();
    await page.waitForSelector('#status[data-state="ready"]', { timeout: 60_000 });
  });

  test("a library that crashes: MODULE_CRASHED, then the next signature works", async () => {
    await writeFile(join(tokenDir, "crash-on-sign"), "");
    const crashed = startSigning(page, { certId: "02", text: "the library crashes" });
    await press(await dialog(CONSENT_TITLE), "alt+a");
    const result = await crashed;
    assert.equal(result.reason, "MODULE_CRASHED", result.error ?? "");
    assert.ok(await gone(CONSENT_TITLE), "the dialog is gone");
    assert.equal(existsSync(join(tokenDir, "crash-on-sign")), false, "the fault fired");
    const text = "after the crash";
    const again = startSigning(page, { certId: "02", text });
    await press(await dialog(CONSENT_TITLE), "alt+a");
    const ok = await again;
    assert.equal(ok.state, "signed", ok.error ?? "");
    assert.equal(await verify("02", text, ok.signature, ok.cert), true);
  });
});

test("uninstall: the program goes, the administrator's policy stays", async () => {
  await agent.stop();
  agent = null;
  await wine(["msiexec", "/x", winPath(MSI), "/qn"]);
  assert.equal(existsSync(join(drive, "Program Files/Keyport/keyport.exe")), false, "keyport.exe was removed");
  assert.ok(existsSync(join(drive, "ProgramData/Keyport/keyport.toml")), "the policy file is left alone");
});
