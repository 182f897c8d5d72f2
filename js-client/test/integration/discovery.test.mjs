// keyport.version and rpc.discover against the real agent: the OpenRPC document validates against
// the OpenRPC meta-schema (@open-rpc/meta-schema, with ajv), lists every method, and what the agent
// really answers validates against the result schemas the document gives.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Ajv from "ajv";
import metaSchema from "@open-rpc/meta-schema";
import { KeyportClient, METHODS } from "keyport-client";
import WebSocket from "ws";
import { MODULE, PIN, provisionToken, startAgent, tempDir } from "../helpers/agent.mjs";
import { digestOf } from "../helpers/verify.mjs";

const TRUSTED = "http://127.0.0.1:5555";
let tmp;
let agent;
let socket;
let nextId = 1;

/** One raw JSON-RPC call, as any JSON-RPC tool would make it (no client library). */
function rpc(method, params) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const onMessage = (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.id !== id) return;
      socket.off("message", onMessage);
      if (msg.error) reject(Object.assign(new Error(msg.error.message), msg.error));
      else resolve(msg.result);
    };
    socket.on("message", onMessage);
    socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) }));
  });
}

before(async () => {
  tmp = await tempDir();
  const token = await provisionToken(tmp.dir);
  agent = await startAgent({ conf: token.conf, args: ["--trust-origin", TRUSTED] });
  socket = new WebSocket(agent.url, { origin: TRUSTED });
  await new Promise((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", reject);
  });
});

after(async () => {
  socket?.close();
  await agent?.stop();
  await tmp?.cleanup();
});

test("keyport.version names the agent, the protocol, every method and its features", async () => {
  const v = await rpc("keyport.version");
  assert.match(v.agent, /^\d+\.\d+\.\d+/);
  assert.match(v.protocol, /^\d+\.\d+\.\d+$/);
  assert.deepEqual([...v.methods].sort(), Object.values(METHODS).sort());
  assert.ok(v.features.includes("module_isolation"), `features: ${v.features}`);
  // Absent consent prompt: the test agent runs without a desktop session.
  assert.ok(!v.features.includes("consent_prompt"), `features: ${v.features}`);

  const client = await KeyportClient.initialize({ url: agent.url, origin: TRUSTED, minAgentVersion: v.agent });
  try {
    const info = await client.agentInfo();
    assert.equal(info.success, true);
    // What the agent says, and the door the client reaches it through (Node: the WebSocket).
    assert.deepEqual(info.data, { ...v, door: "websocket" });
    assert.equal(client.door, "websocket");
  } finally {
    client.close();
  }
  await assert.rejects(
    KeyportClient.initialize({ url: agent.url, origin: TRUSTED, minAgentVersion: "999.0.0" }),
    (e) => e.reason === "AGENT_OUTDATED" && e.code === 2003 && e.description.includes(v.agent),
  );
});

test("rpc.discover is a valid OpenRPC document listing every method", async () => {
  const doc = await rpc("rpc.discover");
  const ajv = new Ajv({ strict: false, allErrors: true });
  const validate = ajv.compile(metaSchema);
  assert.equal(validate(doc), true, JSON.stringify(validate.errors, null, 2));
  assert.match(doc.openrpc, /^1\.3\./);
  const listed = doc.methods.map((m) => m.name).sort();
  // rpc.discover itself is implied by the specification and not listed.
  assert.deepEqual(listed, Object.values(METHODS).filter((m) => m !== "rpc.discover").sort());
  for (const m of doc.methods) {
    assert.equal(typeof m.summary, "string", `${m.name} has a summary`);
    assert.ok(m.result.schema, `${m.name} has a result schema`);
  }
  assert.equal(doc.components.errors.PIN_INCORRECT.code, 1301);
  assert.equal(doc.info["x-agent-version"], (await rpc("keyport.version")).agent);
});

test("what the agent answers validates against the document's schemas; bad params do not", async () => {
  const doc = await rpc("rpc.discover");
  // The document is one schema tree: a method's schemas refer to #/components/schemas/….
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema(doc, "openrpc");
  const index = new Map(doc.methods.map((m, i) => [m.name, i]));
  const resultValidator = (name) => ajv.getSchema(`openrpc#/methods/${index.get(name)}/result/schema`);
  /** Params as one object schema, from the by-name content descriptors. */
  const paramsValidator = (name) => {
    const m = doc.methods[index.get(name)];
    const schema = {
      type: "object",
      properties: Object.fromEntries(m.params.map((p) => [p.name, { $ref: `openrpc#/methods/${index.get(name)}/params/${m.params.indexOf(p)}/schema` }])),
      required: m.params.filter((p) => p.required).map((p) => p.name),
      additionalProperties: false,
    };
    return ajv.compile(schema);
  };
  const check = (name, value, validator = resultValidator(name)) => {
    assert.ok(validator, `no schema for ${name}`);
    assert.equal(validator(value), true, `${name}: ${JSON.stringify(validator.errors)}\n${JSON.stringify(value)}`);
  };

  const slots = await rpc("pkcs11.slotsWithTokenPresent", { module: MODULE });
  check("pkcs11.slotsWithTokenPresent", slots);
  check("pkcs11.slots", await rpc("pkcs11.slots", {}));
  check("pkcs11.info", await rpc("pkcs11.info", {}));
  check("keyport.version", await rpc("keyport.version", {}));
  let signed = false;
  for (const s of slots) {
    const token = await rpc("pkcs11.token", { slot_id: s.slot_id });
    check("pkcs11.token", token);
    if (!(token.flags & 0x400)) continue; // CKF_TOKEN_INITIALIZED: SoftHSM's spare slot is not
    const certs = await rpc("pkcs11.certificates", { slot_id: s.slot_id, parse_certs: true });
    check("pkcs11.certificates", certs);
    const cert = certs.find((c) => c.id === "02");
    if (!cert) continue;
    const request = { slot_id: s.slot_id, cert_id: "02", pin: PIN, data: digestOf("discover", "sha256").toString("base64"), algorithm_reference: "sha256" };
    check("pkcs11.signData", request, paramsValidator("pkcs11.signData"));
    const signature = await rpc("pkcs11.signData", request);
    check("pkcs11.signData", signature);
    const { pin, ...rest } = request;
    const verify = { ...rest, signature };
    check("pkcs11.verifySignedData", verify, paramsValidator("pkcs11.verifySignedData"));
    check("pkcs11.verifySignedData", await rpc("pkcs11.verifySignedData", verify));
    signed = true;
  }
  assert.ok(signed, "the demo token's P-256 key was found and used");

  // The schemas are not vacuous: what the agent refuses, they refuse too.
  const signParams = paramsValidator("pkcs11.signData");
  assert.equal(signParams({ slot_id: 0, cert_id: "02", data: "AA==", algorithm_reference: "md5" }), false);
  assert.equal(signParams({ slot_id: 0, cert_id: "02", data: "AA==", algorithm_reference: "sha256", extra: 1 }), false);
  assert.equal(signParams({ slot_id: -1, cert_id: "02", data: "AA==", algorithm_reference: "sha256" }), false);
  assert.equal(resultValidator("pkcs11.info")({ cryptoki_version: "2.40" }), false);
});
