// The built package (imported by its name, as users do) against the real agent and a SoftHSM token.
import assert from "node:assert/strict";
import { X509Certificate, randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ERROR_CODES, KeyportClient, RestException } from "keyport-client";
import { KEYS, MODULE, ORPHAN_CERT_ID, PIN, freePort, provisionToken, readCert, startAgent, tempDir } from "../helpers/agent.mjs";
import { digestOf, opensslVerify } from "../helpers/verify.mjs";

const TRUSTED = "http://127.0.0.1:5555";
const ALLOWED = "https://allowed.example";
const ALGORITHMS = ["sha1", "sha256", "sha384", "sha512"];

let tmp;
let token;
let agent;
let client;
let pkcs11;
let demoSlot;
let emptySlot;
const certs = new Map(); // id -> DER from the provisioning script

const rejection = (promise) =>
  promise.then(
    (r) => assert.fail(`expected a rejection, got ${JSON.stringify(r)}`),
    (e) => e,
  );

function assertError(err, reason) {
  assert.ok(err instanceof RestException, `not a RestException: ${err}`);
  assert.equal(err.success, false);
  assert.equal(err.reason, reason, `${err.reason}: ${err.description}`);
  assert.equal(err.code, ERROR_CODES[reason]);
  assert.equal(typeof err.description, "string");
  assert.ok(err.description.length > 0);
}

function signRequest(key, message = "hello keyport", algorithm = "sha256", pin = PIN) {
  return {
    slot_id: demoSlot,
    cert_id: key.id,
    pin,
    data: digestOf(message, algorithm).toString("base64"),
    algorithm_reference: algorithm,
  };
}

before(async () => {
  tmp = await tempDir();
  token = await provisionToken(tmp.dir);
  for (const key of KEYS) certs.set(key.id, await readCert(token.certsDir, key));
  agent = await startAgent({
    conf: token.conf,
    // A second allowlisted library that does not exist, for MODULE_LOAD_FAILED.
    args: ["--trust-origin", TRUSTED, "--allow-origin", ALLOWED, "--module", join(tmp.dir, "missing-pkcs11.so")],
  });
  client = await KeyportClient.initialize({ url: agent.url, origin: TRUSTED, module: { linux: MODULE }, signTimeout: 30_000 });
  pkcs11 = client.pkcs11();
  for (const slot of (await pkcs11.slotsWithTokenPresent()).data) {
    const { label } = (await pkcs11.token(slot.slot_id)).data;
    if (label === "keyport-demo") demoSlot = slot.slot_id;
    if (label === "keyport-empty") emptySlot = slot.slot_id;
  }
  assert.equal(typeof demoSlot, "number", "the keyport-demo token is present");
  assert.equal(typeof emptySlot, "number", "the keyport-empty token is present");
});

after(async () => {
  client?.close();
  await agent?.stop();
  await tmp?.cleanup();
});

describe("reading the token", () => {
  test("info: the SoftHSM library", async () => {
    const res = await pkcs11.info();
    assert.equal(res.success, true);
    assert.equal(res.data.manufacturer_id, "SoftHSM");
    assert.match(res.data.cryptoki_version, /^\d+\.\d+$/);
    assert.match(res.data.library_version, /^\d+\.\d+$/);
    assert.equal(typeof res.data.library_description, "string");
    assert.equal(typeof res.data.flags, "number");
  });

  test("slots and slotsWithTokenPresent", async () => {
    const all = (await pkcs11.slots()).data;
    const present = (await pkcs11.slotsWithTokenPresent()).data;
    assert.ok(all.length >= 2);
    const ids = all.map((s) => s.slot_id);
    for (const s of present) {
      assert.ok(ids.includes(s.slot_id));
      assert.equal(s.flags & 0x1, 0x1, "CKF_TOKEN_PRESENT");
      assert.match(s.hardware_version, /^\d+\.\d+$/);
      assert.equal(typeof s.description, "string");
    }
    assert.ok(ids.includes(demoSlot) && ids.includes(emptySlot));
  });

  test("token: labels, PIN limits and state", async () => {
    const t = (await pkcs11.token(demoSlot)).data;
    assert.equal(t.slot_id, demoSlot);
    assert.equal(t.label, "keyport-demo");
    assert.equal(t.model, "SoftHSM v2");
    assert.equal(t.pin_state, "ok");
    assert.equal(t.min_pin_length, 4);
    assert.equal(t.max_pin_length, 255);
    assert.equal(t.flags & 0x400, 0x400, "CKF_TOKEN_INITIALIZED");
    assert.equal((await pkcs11.token(emptySlot)).data.label, "keyport-empty");
  });

  test("certificates: the exact DER of each certificate, without and with parsing", async () => {
    const plain = (await pkcs11.certificates(demoSlot)).data;
    assert.deepEqual(plain.map((c) => c.id).sort(), ["01", "02", "03", "04", ORPHAN_CERT_ID]);
    for (const c of plain) assert.equal(c.parsed, undefined);
    const parsed = (await pkcs11.certificates(demoSlot, { parseCerts: true })).data;
    for (const key of KEYS) {
      const entry = parsed.find((c) => c.id === key.id);
      const der = certs.get(key.id);
      assert.equal(entry.base64, der.toString("base64"), `certificate ${key.id} is the provisioned DER`);
      const x = new X509Certificate(der);
      const p = entry.parsed;
      assert.equal(p.common_name, key.cn);
      assert.match(p.subject, new RegExp(`CN=${key.cn}`));
      assert.match(p.subject, /O=Keyport Demo/);
      assert.equal(p.issuer, p.subject, "self-signed");
      assert.equal(p.public_key_algorithm, key.type.toUpperCase());
      assert.equal(p.public_key_size, key.bits);
      assert.equal(p.curve, key.curve);
      assert.equal(p.sha256_fingerprint, x.fingerprint256.replaceAll(":", ""));
      assert.equal(p.serial_number.replace(/^0+/, ""), x.serialNumber.replace(/^0+/, ""));
      assert.equal(new Date(p.not_before).getTime(), new Date(x.validFrom).getTime());
      assert.equal(new Date(p.not_after).getTime(), new Date(x.validTo).getTime());
      assert.ok(p.key_usage.includes("digitalSignature"));
    }
    assert.deepEqual((await pkcs11.certificates(emptySlot, { parseCerts: true })).data, []);
  });

  test("callbacks work against the agent", async () => {
    const info = await new Promise((resolve, reject) => pkcs11.info((e, d) => (e ? reject(e) : resolve(d))));
    assert.equal(info.data.manufacturer_id, "SoftHSM");
    const [err, data] = await new Promise((resolve) => pkcs11.token(4242, (e, d) => resolve([e, d])));
    assertError(err, "SLOT_NOT_FOUND");
    assert.equal(data, null);
  });
});

describe("signing", () => {
  for (const key of KEYS) {
    for (const algorithm of ALGORITHMS) {
      test(`${key.file.replace(".der", "")} with ${algorithm}: openssl verifies the signature`, async () => {
        const message = `keyport ${key.id} ${algorithm} ${randomBytes(8).toString("hex")}`;
        const request = signRequest(key, message, algorithm);
        const res = await pkcs11.signData(request);
        assert.equal(res.success, true);
        const signature = Buffer.from(res.data, "base64");
        const expectedLength = key.type === "rsa" ? 256 : Math.ceil(key.bits / 8) * 2;
        assert.equal(signature.length, expectedLength);
        const digest = digestOf(message, algorithm);
        const certDer = certs.get(key.id);
        assert.equal(await opensslVerify({ certDer, digest, signature, algorithm }), true, "openssl verifies");

        // The agent's own check agrees, and both reject a tampered signature or another digest.
        const { pin, ...verifyRequest } = request;
        assert.deepEqual(await pkcs11.verifySignedData({ ...verifyRequest, signature: res.data }), { data: true, success: true });
        const tampered = Buffer.from(signature);
        tampered[tampered.length - 1] ^= 0x01;
        assert.equal(await opensslVerify({ certDer, digest, signature: tampered, algorithm }), false);
        assert.equal((await pkcs11.verifySignedData({ ...verifyRequest, signature: tampered.toString("base64") })).data, false);
        const other = digestOf(`${message}!`, algorithm);
        assert.equal(await opensslVerify({ certDer, digest: other, signature, algorithm }), false);
        assert.equal(
          (await pkcs11.verifySignedData({ ...verifyRequest, data: other.toString("base64"), signature: res.data })).data,
          false,
        );
      });
    }
  }

  test("signDataBatch: three signatures in order, each verified by openssl", async () => {
    const key = KEYS[1];
    const messages = ["one", "two", "three"].map((m) => `batch ${m} ${randomBytes(4).toString("hex")}`);
    const { pin, slot_id, cert_id, algorithm_reference } = signRequest(key, messages[0], "sha256");
    const res = await pkcs11.signDataBatch({
      slot_id,
      cert_id,
      pin,
      algorithm_reference,
      data: messages.map((m) => digestOf(m, "sha256").toString("base64")),
    });
    assert.equal(res.success, true);
    assert.equal(res.data.length, 3);
    for (const [i, m] of messages.entries()) {
      const ok = await opensslVerify({
        certDer: certs.get(key.id),
        digest: digestOf(m, "sha256"),
        signature: Buffer.from(res.data[i], "base64"),
        algorithm: "sha256",
      });
      assert.equal(ok, true, `signature ${i}`);
    }
  });

  test("signData with a callback", async () => {
    const key = KEYS[1];
    const request = signRequest(key, "callback");
    const res = await new Promise((resolve, reject) => pkcs11.signData(request, (e, d) => (e ? reject(e) : resolve(d))));
    const ok = await opensslVerify({
      certDer: certs.get(key.id),
      digest: digestOf("callback", "sha256"),
      signature: Buffer.from(res.data, "base64"),
      algorithm: "sha256",
    });
    assert.equal(ok, true);
  });

  test("concurrent signatures on one connection are all valid", async () => {
    const jobs = KEYS.flatMap((key) => [0, 1, 2].map((i) => ({ key, message: `concurrent ${key.id} ${i}` })));
    const results = await Promise.all(jobs.map((j) => pkcs11.signData(signRequest(j.key, j.message))));
    for (const [i, res] of results.entries()) {
      const { key, message } = jobs[i];
      const ok = await opensslVerify({
        certDer: certs.get(key.id),
        digest: digestOf(message, "sha256"),
        signature: Buffer.from(res.data, "base64"),
        algorithm: "sha256",
      });
      assert.equal(ok, true, message);
    }
  });
});

describe("errors the client surfaces", () => {
  test("INVALID_PARAMS: a digest of the wrong length, a misspelt field", async () => {
    const wrongLength = { ...signRequest(KEYS[0]), data: Buffer.alloc(20).toString("base64") };
    const err = await rejection(pkcs11.signData(wrongLength));
    assertError(err, "INVALID_PARAMS");
    assert.match(err.description, /32 bytes/);
    assert.equal(err.source, "agent");
    const { slot_id, ...rest } = signRequest(KEYS[0]);
    const misspelt = await rejection(pkcs11.signData({ ...rest, slotId: slot_id }));
    assertError(misspelt, "INVALID_PARAMS");
    assert.match(misspelt.description, /slotId|slot_id/);
    assert.doesNotMatch(misspelt.description, new RegExp(PIN), "the PIN is never echoed");
  });

  test("MESSAGE_TOO_LARGE (no error data, mapped from -32007); the connection stays usable", async () => {
    const huge = { ...signRequest(KEYS[0]), data: "A".repeat(300 * 1024) };
    const err = await rejection(pkcs11.signData(huge));
    assertError(err, "MESSAGE_TOO_LARGE");
    assert.equal(err.code, -32007);
    assert.equal((await pkcs11.info()).data.manufacturer_id, "SoftHSM");
  });

  test("MODULE_NOT_ALLOWED: a library outside the agent's allowlist", async () => {
    const other = client.pkcs11({ linux: "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so" });
    assertError(await rejection(other.info()), "MODULE_NOT_ALLOWED");
    assertError(await rejection(other.signData(signRequest(KEYS[0]))), "MODULE_NOT_ALLOWED");
    // The same path as the allowlisted default works.
    assert.equal((await client.pkcs11({ linux: MODULE }).info()).data.manufacturer_id, "SoftHSM");
  });

  test("MODULE_LOAD_FAILED: an allowlisted library that cannot be loaded", async () => {
    const missing = client.pkcs11({ linux: join(tmp.dir, "missing-pkcs11.so") });
    assertError(await rejection(missing.info()), "MODULE_LOAD_FAILED");
    assertError(await rejection(missing.slots()), "MODULE_LOAD_FAILED");
  });

  test("SLOT_NOT_FOUND", async () => {
    const ids = (await pkcs11.slots()).data.map((s) => s.slot_id);
    let missing = 4242;
    while (ids.includes(missing)) missing += 1;
    assertError(await rejection(pkcs11.token(missing)), "SLOT_NOT_FOUND");
    assertError(await rejection(pkcs11.certificates(missing)), "SLOT_NOT_FOUND");
    assertError(await rejection(pkcs11.signData({ ...signRequest(KEYS[0]), slot_id: missing })), "SLOT_NOT_FOUND");
  });

  test("CERTIFICATE_NOT_FOUND", async () => {
    assertError(await rejection(pkcs11.signData({ ...signRequest(KEYS[0]), cert_id: "7F" })), "CERTIFICATE_NOT_FOUND");
    assertError(
      await rejection(pkcs11.signData({ ...signRequest(KEYS[0]), slot_id: emptySlot })),
      "CERTIFICATE_NOT_FOUND",
    );
  });

  test("KEY_NOT_FOUND: a certificate without a private key", async () => {
    assertError(await rejection(pkcs11.signData({ ...signRequest(KEYS[0]), cert_id: ORPHAN_CERT_ID })), "KEY_NOT_FOUND");
  });

  test("PIN_INCORRECT, and the right PIN still signs afterwards", async () => {
    const key = KEYS[0];
    await pkcs11.signData(signRequest(key, "before")); // logged in with the right PIN
    const err = await rejection(pkcs11.signData(signRequest(key, "wrong", "sha256", "0000")));
    assertError(err, "PIN_INCORRECT");
    assert.ok(err.pin_state === undefined || ["ok", "count_low", "final_try"].includes(err.pin_state));
    assert.doesNotMatch(JSON.stringify(err), /0000/);
    const res = await pkcs11.signData(signRequest(key, "after"));
    const ok = await opensslVerify({
      certDer: certs.get(key.id),
      digest: digestOf("after", "sha256"),
      signature: Buffer.from(res.data, "base64"),
      algorithm: "sha256",
    });
    assert.equal(ok, true);
  });

  test("PIN_LEN_RANGE: an empty PIN, a PIN longer than the token allows", async () => {
    assertError(await rejection(pkcs11.signData(signRequest(KEYS[1], "m", "sha256", ""))), "PIN_LEN_RANGE");
    assertError(await rejection(pkcs11.signData(signRequest(KEYS[1], "m", "sha256", "1".repeat(300)))), "PIN_LEN_RANGE");
  });

  test("CONSENT_UNAVAILABLE: an allowed but not trusted origin, and a client without Origin", async () => {
    const allowed = await KeyportClient.initialize({ url: agent.url, origin: ALLOWED });
    const local = await KeyportClient.initialize({ url: agent.url }); // no Origin: policy "consent"
    try {
      for (const c of [allowed, local]) {
        const p = c.pkcs11();
        assert.equal((await p.info()).data.manufacturer_id, "SoftHSM", "reading needs no consent");
        const err = await rejection(p.signData(signRequest(KEYS[0])));
        assertError(err, "CONSENT_UNAVAILABLE");
        assert.equal(err.source, "agent");
      }
    } finally {
      allowed.close();
      local.close();
    }
  });

  test("AGENT_UNAVAILABLE: an origin the agent refuses (403), and no agent at all", async () => {
    const refused = await rejection(KeyportClient.initialize({ url: agent.url, origin: "https://evil.example" }));
    assertError(refused, "AGENT_UNAVAILABLE");
    assert.equal(refused.source, "client");
    assert.match(refused.description, /403/);
    const nobody = await rejection(KeyportClient.initialize({ url: `ws://127.0.0.1:${await freePort()}` }));
    assertError(nobody, "AGENT_UNAVAILABLE");
  });
});
