// The PIN never passes through the page: the demo page in headless Chromium with a PIN-pad
// token (the fault module in front of SoftHSM reports CKF_PROTECTED_AUTHENTICATION_PATH and
// "types" the PIN on its simulated keypad), and with the agent's own PIN window (a scripted
// pinentry). Signatures verified with openssl.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmod, copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { JS_CLIENT, KEYS, PIN, REPO, freePort, provisionToken, readCert, startAgent, tempDir } from "../helpers/agent.mjs";
import { opensslVerify } from "../helpers/verify.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const FAULT_MODULE = process.env.KEYPORT_FAULT_MODULE || join(REPO, "target/debug/libkeyport_fault_module.so");
const FAKE_PINENTRY = process.env.KEYPORT_FAKE_PINENTRY || join(REPO, "target/debug/fake-pinentry");

let tmp;
let token;
let browser;

before(async () => {
  assert.ok(existsSync(FAULT_MODULE), `${FAULT_MODULE} not built: cargo build --workspace (or set KEYPORT_FAULT_MODULE)`);
  assert.ok(existsSync(FAKE_PINENTRY), `${FAKE_PINENTRY} not built: cargo build --workspace (or set KEYPORT_FAKE_PINENTRY)`);
  tmp = await tempDir();
  token = await provisionToken(join(tmp.dir, "token"));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  await tmp?.cleanup();
});

/** The agent serving the demo page (trusted: no consent prompt), `module` its default library. */
async function demoAgent(module, extra = [], env = {}) {
  const port = await freePort();
  return startAgent({
    conf: token.conf,
    port,
    module,
    args: ["--demo", "--demo-dir", join(JS_CLIENT, "demo"), "--trust-origin", `http://127.0.0.1:${port}`, ...extra],
    env,
  });
}

/** Open the demo page, sign `text` with certificate `key`, the PIN taken by `path`. */
async function signVia(agent, key, text, path) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(agent.demoUrl);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 20_000 });
  assert.equal(await page.getAttribute("#status", "data-state"), "ready", (await page.textContent("#error")) ?? "");
  const offered = await page.$$eval("#pin-path option", (os) => os.filter((o) => !o.hidden).map((o) => o.value));
  // One way only: no selector to choose from (the label names the PIN field).
  const selector = await page.isVisible("#pin-path");
  assert.equal(selector, offered.length > 1, `offered ${offered}: the selector shows only when there is a choice`);
  if (selector) await page.selectOption("#pin-path", path);
  else assert.equal(await page.getAttribute("#pin-path-label", "for"), "pin");
  assert.equal(await page.isVisible("#pin"), path === "page", "the PIN field shows only when the page takes the PIN");
  await page.check(`#cert-${key.id}`);
  await page.fill("#text", text);
  if (path === "page") await page.fill("#pin", PIN);
  await page.click("#sign");
  await page.waitForSelector('#result[data-state="signed"], #result[data-state="error"]', { timeout: 30_000 });
  const shown = {
    offered,
    state: await page.getAttribute("#result", "data-state"),
    signature: (await page.textContent("#signature")).trim(),
    reason: await page.getAttribute("#error", "data-reason"),
    error: (await page.isVisible("#error")) ? await page.textContent("#error") : null,
    note: await page.textContent("#pin-note"),
    errors,
  };
  await page.close();
  return shown;
}

describe("a PIN-pad reader", () => {
  let agent;
  let module;
  before(async () => {
    // A private copy of the fault module, with its control file beside it.
    module = join(tmp.dir, "libkeyport_fault_module.so");
    await copyFile(FAULT_MODULE, module);
    await writeFile(join(tmp.dir, "fault.conf"), `protected_auth_path=1\npinpad_pin=${PIN}\nlog=${join(tmp.dir, "calls.log")}\n`);
    agent = await demoAgent(module);
  });
  after(async () => {
    await agent?.stop();
  });

  test("the demo offers the reader's keypad; signing sends no PIN and openssl verifies", async () => {
    const text = "Signed on the reader's keypad";
    const shown = await signVia(agent, KEYS[1], text, "reader");
    assert.ok(shown.offered.includes("reader"), `offered: ${shown.offered}`);
    assert.match(shown.note, /keypad/);
    assert.equal(shown.state, "signed", shown.error ?? "");
    const digest = createHash("sha256").update(text).digest();
    const ok = await opensslVerify({
      certDer: await readCert(token.certsDir, KEYS[1]),
      digest,
      signature: Buffer.from(shown.signature, "base64"),
      algorithm: "sha256",
    });
    assert.equal(ok, true);
    assert.deepEqual(shown.errors, []);
  });

  test("cancel on the keypad is shown as PIN_ENTRY_CANCELLED", async () => {
    await writeFile(join(tmp.dir, "fault.conf"), "protected_auth_path=1\npinpad=cancel\n");
    const shown = await signVia(agent, KEYS[1], "cancelled", "reader");
    assert.equal(shown.state, "error");
    assert.equal(shown.reason, "PIN_ENTRY_CANCELLED", shown.error ?? "");
    assert.equal(shown.signature, "");
  });
});

describe("a token without a PIN pad", () => {
  test("the reader's keypad is not offered; without a PIN window, only the page's PIN field", async () => {
    const agent = await demoAgent("/usr/lib/softhsm/libsofthsm2.so", ["--pinentry", "/nonexistent/pinentry"]);
    try {
      const shown = await signVia(agent, KEYS[1], "typed in the page", "page");
      assert.deepEqual(shown.offered, ["page"]);
      assert.equal(shown.state, "signed", shown.error ?? "");
    } finally {
      await agent.stop();
    }
  });
});

describe("the agent's own PIN window", () => {
  let agent;
  let dir;
  before(async () => {
    // The scripted stand-in for pinentry plays the person: a wrong PIN, then the right one;
    // then Cancel. The agent passes a pinentry only what a pinentry needs, so a small script
    // sets the stand-in's own variables.
    dir = join(tmp.dir, "pinentry");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "script"), `pin kpWrong0000\npin ${PIN}\ncancel\n`);
    const program = join(dir, "pinentry");
    await writeFile(
      program,
      `#!/bin/sh\nFAKE_PINENTRY_SCRIPT='${join(dir, "script")}' FAKE_PINENTRY_LOG='${join(dir, "log")}' exec '${FAKE_PINENTRY}'\n`,
    );
    await chmod(program, 0o755);
    // A "graphical" pinentry is used only where there is a display; the stand-in never opens it.
    agent = await demoAgent("/usr/lib/softhsm/libsofthsm2.so", ["--pinentry", program], { DISPLAY: ":99" });
  });
  after(async () => {
    await agent?.stop();
  });

  test("the demo offers the agent's window; a wrong PIN re-opens it; openssl verifies", async () => {
    const text = "Signed with the PIN typed into the agent's window";
    const shown = await signVia(agent, KEYS[1], text, "agent");
    assert.ok(shown.offered.includes("agent"), `offered: ${shown.offered}`);
    assert.equal(shown.state, "signed", shown.error ?? "");
    const ok = await opensslVerify({
      certDer: await readCert(token.certsDir, KEYS[1]),
      digest: createHash("sha256").update(text).digest(),
      signature: Buffer.from(shown.signature, "base64"),
      algorithm: "sha256",
    });
    assert.equal(ok, true);
    const dialogs = (await readFile(join(dir, "log"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(dialogs.length, 2, "one dialog per try");
    const error = dialogs[1].commands.find(([verb]) => verb === "SETERROR");
    assert.match(error?.[1] ?? "", /Wrong PIN/);
    assert.ok(!agent.log().includes(PIN), "the PIN is in no log line");
  });

  test("Cancel in the agent's window is shown as CONSENT_DENIED", async () => {
    const shown = await signVia(agent, KEYS[1], "cancelled", "agent");
    assert.equal(shown.state, "error");
    assert.equal(shown.reason, "CONSENT_DENIED", shown.error ?? "");
    assert.equal(shown.signature, "");
  });
});
