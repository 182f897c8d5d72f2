// The demo page follows tokens live: headless Chromium, the real agent, and a SoftHSM token
// behind the fault module, which pulls its card (hide_tokens + a new token_epoch: every session
// closed, the login lost) and puts it back. The page is told by the agent (onTokenEvent), not
// by polling; after the card is back it signs again, and openssl verifies the signature.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, mkdir, rename, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { JS_CLIENT, KEYS, PIN, REPO, freePort, provisionToken, readCert, startAgent, tempDir } from "../helpers/agent.mjs";
import { opensslVerify } from "../helpers/verify.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const FAULT_MODULE = process.env.KEYPORT_FAULT_MODULE || join(REPO, "target/debug/libkeyport_fault_module.so");

let tmp;
let token;
let browser;

before(async () => {
  assert.ok(existsSync(FAULT_MODULE), `${FAULT_MODULE} not built: cargo build --workspace (or set KEYPORT_FAULT_MODULE)`);
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

for (const mode of ["the module's own C_WaitForSlotEvent", "polling"]) {
  describe(`the demo page follows the token (${mode})`, () => {
    const base = mode === "polling" ? "" : "slot_events=1\n";
    let agent;
    let dir;

    /** Write the fault module's control file atomically. */
    async function control(text) {
      await writeFile(join(dir, "fault.conf.tmp"), base + text);
      await rename(join(dir, "fault.conf.tmp"), join(dir, "fault.conf"));
    }

    before(async () => {
      dir = join(tmp.dir, mode === "polling" ? "poll" : "wait");
      await mkdir(dir, { recursive: true });
      const module = join(dir, "libkeyport_fault_module.so");
      await copyFile(FAULT_MODULE, module);
      await control("");
      const port = await freePort();
      agent = await startAgent({
        conf: token.conf,
        port,
        module,
        args: ["--demo", "--demo-dir", join(JS_CLIENT, "demo"), "--trust-origin", `http://127.0.0.1:${port}`],
      });
    });
    after(async () => {
      await agent?.stop();
    });

    test("a pulled card leaves the list, comes back, and signs again (openssl verifies)", async () => {
      const page = await browser.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(e.message));
      try {
        await page.goto(agent.demoUrl);
        await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 20_000 });
        assert.equal(await page.getAttribute("#status", "data-state"), "ready", (await page.textContent("#error")) ?? "");
        const slotOf = () =>
          page.$$eval("#slots tbody tr", (rows) => {
            const row = rows.find((r) => r.cells[2].textContent === "keyport-demo");
            return row ? Number(row.id.replace("slot-", "")) : null;
          });
        const slot = await slotOf();
        assert.ok(slot !== null, "the demo token is listed");
        const tokenCell = `#slot-${slot} td:nth-child(3)`;

        // Pulled: the page hears it and lists the slot as empty.
        await control("hide_tokens=1\ntoken_epoch=1\n");
        await page.waitForSelector(`#token-events[data-events~="removed:${slot}"]`, { timeout: 15_000 }).catch((e) => {
          throw new Error(`${e.message}\nagent log:\n${agent.log().split("\n").slice(-30).join("\n")}`);
        });
        await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "(no token)", tokenCell, {
          timeout: 15_000,
        });

        // Back: listed again, with its certificates.
        await control("hide_tokens=0\ntoken_epoch=1\n");
        await page.waitForSelector(`#token-events[data-events~="inserted:${slot}"]`, { timeout: 15_000 });
        await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "keyport-demo", tokenCell, {
          timeout: 15_000,
        });
        await page.waitForSelector(`#cert-${KEYS[1].id}`, { timeout: 15_000 });

        // And it signs: the agent logs in again by itself.
        const text = `Signed after the card came back (${mode})`;
        await page.check(`#cert-${KEYS[1].id}`);
        await page.fill("#text", text);
        // The selector shows only when there is more than one way to give the PIN.
        if (await page.isVisible("#pin-path")) await page.selectOption("#pin-path", "page");
        await page.fill("#pin", PIN);
        await page.click("#sign");
        await page.waitForSelector('#result[data-state="signed"], #result[data-state="error"]', { timeout: 30_000 });
        const error = (await page.isVisible("#error")) ? await page.textContent("#error") : "";
        assert.equal(await page.getAttribute("#result", "data-state"), "signed", error);
        const signature = Buffer.from((await page.textContent("#signature")).trim(), "base64");
        const ok = await opensslVerify({
          certDer: await readCert(token.certsDir, KEYS[1]),
          digest: createHash("sha256").update(text).digest(),
          signature,
          algorithm: "sha256",
        });
        assert.equal(ok, true);
        assert.deepEqual(errors, []);
        assert.ok(!agent.log().includes(PIN), "the PIN is in no log line");
      } finally {
        await page.close();
      }
    });
  });
}
