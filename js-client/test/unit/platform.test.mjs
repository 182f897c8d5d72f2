// Which module entry the client picks for the OS it runs on.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";
import * as esm from "../../dist/esm/index.js";
import { INFO, startFakeAgent } from "./fake-agent.mjs";

const { detectOs } = esm;

test("Node: process.platform decides", () => {
  assert.equal(detectOs({ process: { versions: { node: "20.0.0" }, platform: "linux" } }), "linux");
  assert.equal(detectOs({ process: { versions: { node: "20.0.0" }, platform: "darwin" } }), "mac");
  assert.equal(detectOs({ process: { versions: { node: "20.0.0" }, platform: "win32" } }), "win");
  assert.equal(detectOs({ process: { versions: { node: "20.0.0" }, platform: "freebsd" } }), undefined);
  // Node wins over a navigator (Node 21+ has one).
  assert.equal(
    detectOs({ process: { versions: { node: "22.0.0" }, platform: "darwin" }, navigator: { platform: "Win32" } }),
    "mac",
  );
  const expected = { linux: "linux", darwin: "mac", win32: "win" }[process.platform];
  assert.equal(detectOs(), expected);
});

test("browsers: userAgentData.platform, then navigator.platform, then the user agent", () => {
  const cases = [
    [{ userAgentData: { platform: "Windows" }, platform: "Linux x86_64" }, "win"],
    [{ userAgentData: { platform: "macOS" } }, "mac"],
    [{ userAgentData: { platform: "Linux" } }, "linux"],
    [{ userAgentData: { platform: "Chrome OS" }, platform: "Linux x86_64" }, undefined],
    [{ userAgentData: { platform: "Android" } }, undefined],
    [{ userAgentData: { platform: "" }, platform: "Win32" }, "win"],
    [{ platform: "MacIntel" }, "mac"],
    [{ platform: "Linux x86_64" }, "linux"],
    [{ platform: "Linux armv8l", userAgent: "Mozilla/5.0 (Linux; Android 14)" }, "linux"],
    [{ platform: "iPhone" }, undefined],
    [{ platform: "", userAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36" }, "win"],
    [{ platform: "", userAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Firefox/130.0" }, "mac"],
    [{ platform: "", userAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0" }, "linux"],
    [{ platform: "", userAgent: "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0)" }, undefined],
    [{}, undefined],
  ];
  for (const [navigator, expected] of cases) {
    assert.equal(detectOs({ navigator }), expected, JSON.stringify(navigator));
  }
  assert.equal(detectOs({}), undefined);
});

test("the CommonJS build exports the same API", () => {
  const require = createRequire(import.meta.url);
  const cjs = require("../../dist/cjs/index.cjs");
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  assert.equal(typeof cjs.KeyportClient.initialize, "function");
  assert.deepEqual(cjs.ERROR_CODES, esm.ERROR_CODES);
  assert.equal(cjs.DEFAULT_URL, "ws://127.0.0.1:10443");
  assert.equal(cjs.DEFAULT_PORT, 10443);
});

test("the CommonJS build loads ws lazily and talks to an agent", async () => {
  const require = createRequire(import.meta.url);
  const { KeyportClient } = require("../../dist/cjs/index.cjs");
  const agent = await startFakeAgent();
  try {
    const client = await KeyportClient.initialize({ url: agent.url, origin: "http://127.0.0.1:5555" });
    assert.deepEqual((await client.pkcs11().info()).data, INFO);
    client.close();
    assert.equal(agent.connections[0].origin, "http://127.0.0.1:5555");
  } finally {
    await agent.close();
  }
});
