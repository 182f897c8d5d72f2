// The public API against a fake agent: wire format, promises, callbacks, module choice.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { ERROR_CODES, KeyportClient, METHODS, RestException } from "../../dist/esm/index.js";
import { INFO, SLOTS, cannedResult, error, result, startFakeAgent, within } from "./fake-agent.mjs";

const SOFTHSM = { linux: "/usr/lib/softhsm/libsofthsm2.so", mac: "/opt/softhsm.dylib", win: "C:\\softhsm2.dll" };
const SIGN = { slot_id: 7, cert_id: "01", pin: "1234", data: "A".repeat(43) + "=", algorithm_reference: "sha256" };

/**
 * A node-style callback that records its calls; `called` resolves at the first. `settled()` then
 * lets every task already queued run (a second call would be one of them) before the test looks.
 */
function recordingCallback() {
  const calls = [];
  let first;
  const called = new Promise((resolve) => (first = resolve));
  return {
    callback: (err, data) => {
      calls.push([err, data]);
      first();
    },
    settled: async () => {
      await within(called, "the callback");
      await new Promise((resolve) => setImmediate(resolve));
      return calls;
    },
  };
}

describe("KeyportClient against a fake agent", () => {
  let agent;
  let client;
  before(async () => {
    agent = await startFakeAgent();
    client = await KeyportClient.initialize({ url: agent.url, platform: "linux" });
  });
  after(async () => {
    client.close();
    await agent.close();
  });

  test("every method resolves { data, success: true } with the agent's result", async () => {
    const p = client.pkcs11();
    assert.deepEqual(await p.info(), { data: INFO, success: true });
    assert.deepEqual(await p.slots(), { data: SLOTS, success: true });
    assert.deepEqual(await p.slotsWithTokenPresent(), { data: SLOTS, success: true });
    assert.deepEqual(await p.token(7), { data: cannedResult("pkcs11.token"), success: true });
    assert.deepEqual(await p.certificates(7), { data: cannedResult("pkcs11.certificates"), success: true });
    assert.deepEqual(await p.signData(SIGN), { data: "c2lnbmF0dXJl", success: true });
    assert.deepEqual(await p.verifySignedData({ ...SIGN, signature: "c2ln" }), { data: true, success: true });
  });

  test("requests are JSON-RPC 2.0 with by-name snake_case params, on one connection", async () => {
    const before = agent.requests.length;
    const p = client.pkcs11();
    await p.info();
    await p.token(42);
    await p.certificates(42, { parseCerts: true });
    await p.certificates(42, { parseCerts: false });
    await p.signData(SIGN);
    await p.verifySignedData({ ...SIGN, signature: "c2ln" });
    const sent = agent.requests.slice(before);
    for (const r of sent) {
      assert.equal(r.jsonrpc, "2.0");
      assert.equal(typeof r.id, "number");
    }
    assert.equal(new Set(sent.map((r) => r.id)).size, sent.length, "ids are unique");
    assert.deepEqual(
      sent.map((r) => [r.method, r.params]),
      [
        [METHODS.info, {}],
        [METHODS.token, { slot_id: 42 }],
        [METHODS.certificates, { slot_id: 42, parse_certs: true }],
        [METHODS.certificates, { slot_id: 42, parse_certs: false }],
        [METHODS.signData, SIGN],
        [METHODS.verifySignedData, { ...SIGN, signature: "c2ln" }],
      ],
    );
    assert.equal(agent.connections.length, 1, "one WebSocket for all requests");
  });

  test("the module for the running OS is sent; none when not configured", async () => {
    const before = agent.requests.length;
    await client.pkcs11().info(); // no module config at all
    await client.pkcs11(SOFTHSM).info(); // linux entry
    await client.pkcs11({ mac: "/opt/x.dylib", win: "C:\\x.dll" }).info(); // no entry for linux
    const mac = await KeyportClient.initialize({ url: agent.url, platform: "mac", module: SOFTHSM });
    await mac.pkcs11().slots(); // config's module, mac entry
    await mac.pkcs11({ mac: "/override.dylib" }).token(1); // pkcs11(moduleConfig) wins over config
    const win = await KeyportClient.initialize({ url: agent.url, platform: "win", module: SOFTHSM });
    await win.pkcs11().signData(SIGN);
    mac.close();
    win.close();
    const params = agent.requests.slice(before).map((r) => r.params);
    assert.deepEqual(params, [
      {},
      { module: SOFTHSM.linux },
      {},
      { module: SOFTHSM.mac },
      { slot_id: 1, module: "/override.dylib" },
      { ...SIGN, module: SOFTHSM.win },
    ]);
    assert.equal(client.pkcs11(SOFTHSM).module, SOFTHSM.linux);
    assert.equal(client.pkcs11().module, undefined);
  });

  test("certificates(slotId, callback) works without options", async () => {
    const data = await new Promise((resolve, reject) =>
      client.pkcs11().certificates(7, (err, res) => (err ? reject(err) : resolve(res))),
    );
    assert.deepEqual(data, { data: cannedResult("pkcs11.certificates"), success: true });
    assert.deepEqual(agent.requests.at(-1).params, { slot_id: 7 });
  });

  test("callbacks get (null, response) on success, as the promise resolves", async () => {
    const p = client.pkcs11();
    const recorder = recordingCallback();
    const promise = p.slots(recorder.callback);
    const resolved = await promise;
    assert.deepEqual(await recorder.settled(), [[null, resolved]]);
    assert.deepEqual(resolved, { data: SLOTS, success: true });
  });
});

describe("errors from the agent", () => {
  let agent;
  let client;
  before(async () => {
    agent = await startFakeAgent((req, socket) => {
      const slot = req.params.slot_id;
      if (req.method === "pkcs11.signData" && req.params.pin === "0000") {
        return error(socket, req.id, {
          code: 1301,
          message: "The PIN is incorrect. Few tries remain.",
          data: { reason: "PIN_INCORRECT", pin_state: "count_low" },
        });
      }
      if (req.method === "pkcs11.token" && slot === -32601) {
        return error(socket, req.id, { code: -32601, message: "Method not found" });
      }
      if (req.method === "pkcs11.token" && typeof slot === "number" && slot < 0) {
        return error(socket, req.id, { code: slot }); // no message, no data
      }
      if (req.method === "pkcs11.token" && slot === 99) {
        return error(socket, req.id, { code: 1101, message: "No slot with this id.", data: { reason: "SLOT_NOT_FOUND" } });
      }
      if (req.method === "pkcs11.token" && slot === 5555) {
        return error(socket, req.id, { code: 5555, message: "Something new." });
      }
      if (req.method === "pkcs11.token" && slot === 6666) {
        return error(socket, req.id, "not an object");
      }
      result(socket, req.id, cannedResult(req.method));
    });
    client = await KeyportClient.initialize({ url: agent.url });
  });
  after(async () => {
    client.close();
    await agent.close();
  });

  test("an agent error rejects with a RestException carrying code, reason, description and pin_state", async () => {
    const err = await client.pkcs11().signData({ ...SIGN, pin: "0000" }).then(
      () => assert.fail("should reject"),
      (e) => e,
    );
    assert.ok(err instanceof RestException);
    assert.ok(err instanceof Error);
    assert.equal(err.success, false);
    assert.equal(err.code, 1301);
    assert.equal(err.reason, "PIN_INCORRECT");
    assert.equal(err.pin_state, "count_low");
    assert.equal(err.description, "The PIN is incorrect. Few tries remain.");
    assert.equal(err.source, "agent");
    assert.deepEqual(JSON.parse(JSON.stringify(err)), {
      success: false,
      description: "The PIN is incorrect. Few tries remain.",
      code: 1301,
      reason: "PIN_INCORRECT",
      pin_state: "count_low",
      source: "agent",
    });
  });

  test("JSON-RPC layer errors without data are mapped from their code", async () => {
    for (const reason of ["PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "MESSAGE_TOO_LARGE"]) {
      const code = ERROR_CODES[reason];
      const err = await client.pkcs11().token(code).catch((e) => e);
      assert.equal(err.reason, reason, `code ${code}`);
      assert.equal(err.code, code);
      assert.equal(err.pin_state, undefined);
      assert.ok(err.description.length > 0, "a default description");
    }
    const err = await client.pkcs11().token(-32601).catch((e) => e);
    assert.equal(err.reason, "METHOD_NOT_FOUND");
    // The protocol's sentence first, the JSON-RPC library's message after it.
    assert.equal(err.description, "The agent has no such method. (Method not found)");
  });

  test("unknown codes and malformed error objects become INTERNAL", async () => {
    const unknown = await client.pkcs11().token(5555).catch((e) => e);
    assert.equal(unknown.code, 5555);
    assert.equal(unknown.reason, "INTERNAL");
    assert.equal(unknown.description, "Something new.");
    const malformed = await client.pkcs11().token(6666).catch((e) => e);
    assert.equal(malformed.reason, "INTERNAL");
    assert.equal(malformed.code, ERROR_CODES.INTERNAL);
  });

  test("callbacks get (error, null) on failure, and the promise rejects with the same error", async () => {
    const recorder = recordingCallback();
    const promise = client.pkcs11().token(99, recorder.callback);
    const rejected = await promise.catch((e) => e);
    const seen = await recorder.settled();
    assert.equal(seen.length, 1);
    assert.equal(seen[0][0], rejected);
    assert.equal(seen[0][1], null);
    assert.equal(rejected.reason, "SLOT_NOT_FOUND");
  });

  test("using only the callback does not crash Node with an unhandled rejection; ignoring the promise without one does", async () => {
    // Node exits with an error on an unhandled rejection: run both cases in a child process.
    const script = (withCallback) => `
      import { KeyportClient } from ${JSON.stringify(new URL("../../dist/esm/index.js", import.meta.url).href)};
      const client = await KeyportClient.initialize({ url: ${JSON.stringify(agent.url)} });
      ${
        withCallback
          ? "client.pkcs11().token(99, (e) => { console.log('callback', e.reason); client.close(); console.log('done'); });"
          : "client.pkcs11().token(99); setTimeout(() => { client.close(); console.log('done'); }, 10_000);"
      }
    `;
    const run = (withCallback) =>
      new Promise((resolve) => {
        execFile(process.execPath, ["--input-type=module", "-e", script(withCallback)], (err, stdout, stderr) =>
          resolve({ code: err ? err.code : 0, stdout, stderr }),
        );
      });
    const [ok, crash] = await Promise.all([run(true), run(false)]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "callback SLOT_NOT_FOUND\ndone\n");
    assert.notEqual(crash.code, 0, "the control case must crash");
    assert.match(crash.stderr, /No slot with this id/);
  });
});

describe("initialize", () => {
  test("resolves after the connection is open, and with a callback too", async () => {
    const agent = await startFakeAgent();
    try {
      const client = await KeyportClient.initialize({ url: agent.url });
      assert.equal(agent.connections.length, 1, "initialize connects");
      client.close();
      const viaCallback = await new Promise((resolve, reject) =>
        KeyportClient.initialize({ url: agent.url }, (err, c) => (err ? reject(err) : resolve(c))),
      );
      assert.ok(viaCallback instanceof KeyportClient);
      assert.deepEqual((await viaCallback.pkcs11().info()).data, INFO);
      viaCallback.close();
    } finally {
      await agent.close();
    }
  });

  test("defaults: ws://127.0.0.1:10443, 35 s, 120 s for signData", async () => {
    const seen = [];
    class Recorder {
      constructor(url) {
        seen.push(url);
        this.readyState = 0;
        setTimeout(() => this.onclose?.({ code: 1006 }), 0);
      }
      send() {}
      close() {}
    }
    const err = await KeyportClient.initialize({ WebSocket: Recorder }).catch((e) => e);
    assert.deepEqual(seen, ["ws://127.0.0.1:10443"]);
    assert.equal(err.reason, "AGENT_UNAVAILABLE");
  });

  test("invalid config is refused with INVALID_PARAMS from the client", async () => {
    for (const config of [
      { url: "http://127.0.0.1:10443" },
      { url: "127.0.0.1:10443" },
      { timeout: 0 },
      { timeout: -5 },
      { signTimeout: Number.NaN },
      { connectTimeout: "10" },
      { platform: "beos" },
      { WebSocket: "ws" },
    ]) {
      const err = await KeyportClient.initialize(config).catch((e) => e);
      assert.ok(err instanceof RestException, JSON.stringify(config));
      assert.equal(err.reason, "INVALID_PARAMS");
      assert.equal(err.code, ERROR_CODES.INVALID_PARAMS);
      assert.equal(err.source, "client");
    }
    const viaCallback = await new Promise((resolve) => KeyportClient.initialize({ timeout: 0 }, (e, c) => resolve([e, c])));
    assert.equal(viaCallback[0].reason, "INVALID_PARAMS");
    assert.equal(viaCallback[1], null);
  });
});
