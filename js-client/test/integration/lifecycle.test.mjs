// The real agent going away and coming back: AGENT_UNAVAILABLE, then reconnection on the next call.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { KeyportClient } from "keyport-client";
import { KEYS, PIN, provisionToken, readCert, startAgent, tempDir } from "../helpers/agent.mjs";
import { digestOf, opensslVerify } from "../helpers/verify.mjs";

const TRUSTED = "http://127.0.0.1:5555";
let tmp;
let token;

before(async () => {
  tmp = await tempDir();
  token = await provisionToken(tmp.dir);
});
after(async () => {
  await tmp?.cleanup();
});

async function demoSlot(pkcs11) {
  for (const slot of (await pkcs11.slotsWithTokenPresent()).data) {
    if ((await pkcs11.token(slot.slot_id)).data.label === "keyport-demo") return slot.slot_id;
  }
  throw new Error("no keyport-demo token");
}

test("agent stopped: AGENT_UNAVAILABLE; agent started again: the same client signs", async () => {
  const args = ["--trust-origin", TRUSTED];
  let agent = await startAgent({ conf: token.conf, args });
  const port = agent.port; // the restart binds the same port again
  const client = await KeyportClient.initialize({ url: agent.url, origin: TRUSTED, timeout: 10_000 });
  try {
    const pkcs11 = client.pkcs11();
    const slot = await demoSlot(pkcs11);

    await agent.stop();
    for (const call of [() => pkcs11.info(), () => pkcs11.slots(), () => pkcs11.token(slot)]) {
      const err = await call().then(
        () => assert.fail("the agent is stopped"),
        (e) => e,
      );
      assert.equal(err.reason, "AGENT_UNAVAILABLE");
      assert.equal(err.code, 2001);
      assert.equal(err.source, "client");
    }

    agent = await startAgent({ conf: token.conf, port, args });
    assert.equal(agent.port, port);
    const key = KEYS[0];
    const res = await pkcs11.signData({
      slot_id: await demoSlot(pkcs11), // SoftHSM keeps its slot ids across restarts, but do not rely on it
      cert_id: key.id,
      pin: PIN,
      data: digestOf("after restart", "sha256").toString("base64"),
      algorithm_reference: "sha256",
    });
    const ok = await opensslVerify({
      certDer: await readCert(token.certsDir, key),
      digest: digestOf("after restart", "sha256"),
      signature: Buffer.from(res.data, "base64"),
      algorithm: "sha256",
    });
    assert.equal(ok, true);
  } finally {
    client.close();
    await agent.stop();
  }
});

test("the agent stops while a client is connected and idle: the next call fails cleanly, not with a timeout", async () => {
  const agent = await startAgent({ conf: token.conf, args: ["--trust-origin", TRUSTED] });
  const client = await KeyportClient.initialize({ url: agent.url, origin: TRUSTED, timeout: 10_000 });
  try {
    assert.equal((await client.pkcs11().info()).data.manufacturer_id, "SoftHSM");
    await agent.stop();
    const started = Date.now();
    const err = await client.pkcs11().info().then(
      () => assert.fail("the agent is stopped"),
      (e) => e,
    );
    assert.equal(err.reason, "AGENT_UNAVAILABLE");
    assert.ok(Date.now() - started < 5000, "fails fast");
  } finally {
    client.close();
  }
});
