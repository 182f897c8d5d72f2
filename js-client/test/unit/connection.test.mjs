// The connection: multiplexing, timeouts, agent down or refusing, closes, reconnection.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import WebSocket from "ws";
import { ERROR_CODES, KeyportClient } from "../../dist/esm/index.js";
import { INFO, cannedResult, freePort, result, startFakeAgent, startSilentServer, within } from "./fake-agent.mjs";

const rejection = (promise) => promise.then(() => assert.fail("expected a rejection"), (e) => e);

function assertUnavailable(err, pattern) {
  assert.equal(err.reason, "AGENT_UNAVAILABLE");
  assert.equal(err.code, ERROR_CODES.AGENT_UNAVAILABLE);
  assert.equal(err.code, 2001);
  assert.equal(err.source, "client");
  assert.equal(err.success, false);
  if (pattern) assert.match(err.description, pattern);
}

describe("multiplexing", () => {
  test("concurrent requests are answered out of order and each gets its own result", async () => {
    const held = [];
    const agent = await startFakeAgent((req, socket) => {
      held.push([req, socket]);
      if (held.length === 3) {
        // Answer in reverse order, and the token result echoes the slot asked for.
        for (const [r, s] of held.reverse()) {
          result(s, r.id, r.method === "pkcs11.token" ? { slot_id: r.params.slot_id } : cannedResult(r.method));
        }
      }
    });
    const client = await KeyportClient.initialize({ url: agent.url });
    try {
      const p = client.pkcs11();
      const [a, b, info] = await Promise.all([p.token(1), p.token(2), p.info()]);
      assert.equal(a.data.slot_id, 1);
      assert.equal(b.data.slot_id, 2);
      assert.deepEqual(info.data, INFO);
      assert.equal(agent.connections.length, 1);
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("batched answers, non-JSON frames and unknown ids are handled", async () => {
    const agent = await startFakeAgent((req, socket) => {
      socket.send("not json");
      socket.send(JSON.stringify({ jsonrpc: "2.0", id: 999999, result: "stray" }));
      socket.send(JSON.stringify([{ jsonrpc: "2.0", id: req.id, result: cannedResult(req.method) }]));
    });
    const client = await KeyportClient.initialize({ url: agent.url });
    try {
      assert.deepEqual((await client.pkcs11().info()).data, INFO);
    } finally {
      client.close();
      await agent.close();
    }
  });
});

describe("errors the agent could not give an id (\"id\": null)", () => {
  const tooLarge = { code: -32007, message: "Request is too big", data: "Exceeded max limit of 262144" };

  test("-32007 goes to the largest request in flight on that connection", async () => {
    const agent = await startFakeAgent((req, socket, a) => {
      if (a.requests.length < 3) return; // hold the first two
      // As jsonrpsee does for an oversized frame: no id, and `data` is a string.
      socket.send(JSON.stringify({ jsonrpc: "2.0", id: null, error: tooLarge }));
      const small = a.requests.find((r) => r.method === "pkcs11.info");
      result(socket, small.id, cannedResult("pkcs11.info"));
    });
    // The default timeout: the answers must not race a short one on a busy machine.
    const client = await KeyportClient.initialize({ url: agent.url });
    try {
      const p = client.pkcs11();
      const big = { slot_id: 1, cert_id: "01", pin: "1234", data: "A".repeat(4000), algorithm_reference: "sha256" };
      const pendingSlots = p.slots();
      const [info, bigErr] = await Promise.allSettled([p.info(), p.signData(big)]);
      // slots() is still waiting (the fake never answers it): closing the client ends it, and
      // what it gets shows that the id-less error was not given to it.
      client.close();
      const [slots] = await Promise.allSettled([pendingSlots]);
      assert.equal(info.status, "fulfilled");
      assert.equal(bigErr.status, "rejected");
      assert.equal(bigErr.reason.reason, "MESSAGE_TOO_LARGE");
      assert.equal(bigErr.reason.code, -32007);
      assert.equal(bigErr.reason.source, "agent");
      assert.equal(
        bigErr.reason.description,
        "The request is larger than the agent accepts. (Request is too big: Exceeded max limit of 262144)",
      );
      assert.equal(slots.status, "rejected");
      assert.equal(slots.reason.reason, "AGENT_UNAVAILABLE", "the other request is not blamed");
      assert.match(slots.reason.description, /client closed/);
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("another id-less error goes to the only request in flight, and to none of several", async () => {
    const parseError = { code: -32700, message: "Parse error" };
    const agent = await startFakeAgent((req, socket, a) => {
      if (req.method === "pkcs11.info") socket.send(JSON.stringify({ jsonrpc: "2.0", id: null, error: parseError }));
      if (req.method === "pkcs11.slots" && a.requests.filter((r) => r.method === "pkcs11.slots").length === 2) {
        socket.send(JSON.stringify({ jsonrpc: "2.0", id: null, error: parseError }));
      }
    });
    // The lone request waits with the default timeout (its answer must win on a busy machine);
    // the two that get no answer time out after 300 ms.
    const client = await KeyportClient.initialize({ url: agent.url });
    const short = await KeyportClient.initialize({ url: agent.url, timeout: 300 });
    try {
      const alone = await rejection(client.pkcs11().info());
      assert.equal(alone.reason, "PARSE_ERROR");
      const p = short.pkcs11();
      const both = await Promise.allSettled([p.slots(), p.slots()]);
      assert.deepEqual(both.map((r) => r.reason.reason), ["REQUEST_TIMEOUT", "REQUEST_TIMEOUT"]);
    } finally {
      client.close();
      short.close();
      await agent.close();
    }
  });
});

describe("timeouts", () => {
  test("no answer within `timeout`: REQUEST_TIMEOUT from the client; the late answer is ignored", async () => {
    let late;
    const agent = await startFakeAgent((req, socket) => {
      if (req.method === "pkcs11.info" && !late) {
        late = () => result(socket, req.id, "late");
        return;
      }
      result(socket, req.id, cannedResult(req.method));
    });
    const client = await KeyportClient.initialize({ url: agent.url, timeout: 150, signTimeout: 30_000 });
    try {
      const started = Date.now();
      const err = await rejection(client.pkcs11().info());
      const waited = Date.now() - started;
      assert.equal(err.reason, "REQUEST_TIMEOUT");
      assert.equal(err.code, ERROR_CODES.REQUEST_TIMEOUT);
      assert.equal(err.source, "client");
      assert.match(err.description, /within 150 ms/);
      assert.ok(waited >= 140 && waited < 5000, `waited ${waited} ms`);
      late(); // the answer arrives after the client gave up
      // The connection stays usable, and the late answer is not taken for the next request
      // (a signData, whose long signTimeout a busy machine cannot miss).
      const sign = { slot_id: 1, cert_id: "01", pin: "1234", data: "A".repeat(43) + "=", algorithm_reference: "sha256" };
      assert.deepEqual(await client.pkcs11().signData(sign), { data: cannedResult("pkcs11.signData"), success: true });
      assert.equal(agent.connections.length, 1);
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("signData waits `signTimeout`, other methods `timeout`", async () => {
    const agent = await startFakeAgent((req, socket) => {
      setTimeout(() => result(socket, req.id, cannedResult(req.method)), 250);
    });
    const client = await KeyportClient.initialize({ url: agent.url, timeout: 100, signTimeout: 2000 });
    try {
      const p = client.pkcs11();
      const sign = { slot_id: 1, cert_id: "01", pin: "1234", data: "AA==", algorithm_reference: "sha1" };
      assert.equal((await p.signData(sign)).data, "c2lnbmF0dXJl");
      assert.equal((await rejection(p.verifySignedData({ ...sign, signature: "AA==" }))).reason, "REQUEST_TIMEOUT");
      assert.equal((await rejection(p.slots())).reason, "REQUEST_TIMEOUT");
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("the request timeout also bounds connecting", async () => {
    const agent = await startFakeAgent();
    let hang = false;
    const hung = { readyState: 0, send() {}, close() {}, onopen: null, onmessage: null, onerror: null, onclose: null };
    class Switchable extends WebSocket {
      constructor(url, ...rest) {
        if (hang) return hung; // a handshake that never completes
        super(url, ...rest);
      }
    }
    const client = await KeyportClient.initialize({ url: agent.url, WebSocket: Switchable, timeout: 200, connectTimeout: 1000 });
    try {
      client.close();
      hang = true;
      const started = Date.now();
      const err = await rejection(client.pkcs11().info());
      assert.equal(err.reason, "REQUEST_TIMEOUT");
      assert.equal(err.source, "client");
      assert.ok(Date.now() - started < 2000);
      assert.equal(agent.requests.length, 0, "nothing was sent");
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("a handshake that never completes fails after `connectTimeout` with AGENT_UNAVAILABLE", async () => {
    const silent = await startSilentServer();
    try {
      const started = Date.now();
      const err = await rejection(KeyportClient.initialize({ url: silent.url, connectTimeout: 300 }));
      assertUnavailable(err, /within 300 ms/);
      const waited = Date.now() - started;
      assert.ok(waited >= 290 && waited < 2000, `waited ${waited} ms`);
    } finally {
      await silent.close();
    }
  });
});

describe("agent down, refusing, closing", () => {
  test("nothing listening: initialize and calls fail with AGENT_UNAVAILABLE (promise and callback)", async () => {
    const url = `ws://127.0.0.1:${await freePort()}`;
    assertUnavailable(await rejection(KeyportClient.initialize({ url })), /not running/);
    const [err, client] = await new Promise((resolve) => KeyportClient.initialize({ url }, (e, c) => resolve([e, c])));
    assertUnavailable(err);
    assert.equal(client, null);
  });

  test("a refused handshake (403: origin not allowed) is AGENT_UNAVAILABLE", async () => {
    const agent = await startFakeAgent(undefined, {
      verifyClient: (info, done) => done(info.origin === "https://good.example", 403, "Origin not allowed"),
    });
    try {
      const err = await rejection(KeyportClient.initialize({ url: agent.url, origin: "https://evil.example" }));
      assertUnavailable(err, /403/);
      const ok = await KeyportClient.initialize({ url: agent.url, origin: "https://good.example" });
      assert.deepEqual((await ok.pkcs11().info()).data, INFO);
      assert.deepEqual(
        agent.connections.map((c) => c.origin),
        ["https://good.example"],
      );
      ok.close();
    } finally {
      await agent.close();
    }
  });

  test("the agent closes mid-request: AGENT_UNAVAILABLE, and the next call reconnects", async () => {
    let calls = 0;
    const agent = await startFakeAgent((req, socket) => {
      calls += 1;
      if (calls === 1) socket.close(1011, "crash");
      else result(socket, req.id, cannedResult(req.method));
    });
    const client = await KeyportClient.initialize({ url: agent.url });
    try {
      const p = client.pkcs11();
      const err = await rejection(p.info());
      assertUnavailable(err, /closed before it answered \(close code 1011\)/);
      assert.deepEqual((await p.info()).data, INFO);
      assert.equal(agent.connections.length, 2, "a new connection");
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("all requests in flight fail when the connection drops; none is left pending", async () => {
    const agent = await startFakeAgent((req, socket, a) => {
      if (a.requests.length === 3) socket.terminate();
    });
    const client = await KeyportClient.initialize({ url: agent.url, timeout: 5000 });
    try {
      const p = client.pkcs11();
      const errors = await Promise.all([rejection(p.info()), rejection(p.slots()), rejection(p.token(1))]);
      for (const err of errors) assertUnavailable(err, /closed before it answered/);
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("the agent stops and starts again on the same port: calls fail, then succeed", async () => {
    const first = await startFakeAgent();
    const port = first.port;
    // `ws`, with a hand on the client's sockets to see when one has closed.
    const sockets = [];
    class Watched extends WebSocket {
      constructor(...args) {
        super(...args);
        sockets.push(this);
      }
    }
    const client = await KeyportClient.initialize({ url: first.url, WebSocket: Watched });
    const p = client.pkcs11();
    assert.deepEqual((await p.info()).data, INFO);
    await first.close();
    // The client learns that the agent went away from its socket's close event (its own
    // listener runs first, having been added first): once that has fired, the next call
    // must try to connect again.
    const socket = sockets.at(-1);
    if (socket.readyState !== WebSocket.CLOSED) {
      await within(new Promise((resolve) => socket.once("close", resolve)), "the client's socket closing");
    }
    assertUnavailable(await rejection(p.info()), /not running/);
    const second = await startFakeAgent(undefined, { port });
    try {
      assert.deepEqual((await p.info()).data, INFO);
      assert.equal(second.connections.length, 1);
    } finally {
      client.close();
      await second.close();
    }
  });

  test("close() fails requests in flight; a later call reconnects", async () => {
    const agent = await startFakeAgent((req, socket) => {
      if (req.method === "pkcs11.info") result(socket, req.id, cannedResult(req.method));
      // pkcs11.slots is never answered
    });
    const client = await KeyportClient.initialize({ url: agent.url });
    try {
      const pending = rejection(client.pkcs11().slots());
      await within(agent.received((r) => r.method === "pkcs11.slots"), "the agent receiving the request");
      client.close();
      assertUnavailable(await pending, /client closed/);
      assert.deepEqual((await client.pkcs11().info()).data, INFO);
      assert.equal(agent.connections.length, 2);
    } finally {
      client.close();
      await agent.close();
    }
  });
});

describe("WebSocket implementations", () => {
  test("in Node without a global WebSocket, `ws` is loaded and sends the configured origin", async () => {
    assert.equal(globalThis.WebSocket, undefined, "Node 20 has no global WebSocket");
    const agent = await startFakeAgent();
    try {
      const client = await KeyportClient.initialize({ url: agent.url, origin: "http://127.0.0.1:5555" });
      await client.pkcs11().info();
      client.close();
      const noOrigin = await KeyportClient.initialize({ url: agent.url });
      noOrigin.close();
      assert.deepEqual(
        agent.connections.map((c) => c.origin),
        ["http://127.0.0.1:5555", undefined],
      );
    } finally {
      await agent.close();
    }
  });

  test("a global WebSocket is used when present; a configured class wins over it", async () => {
    const agent = await startFakeAgent();
    const made = [];
    const counting = (label) =>
      class extends WebSocket {
        constructor(url, ...rest) {
          made.push(label);
          super(url, ...rest);
        }
      };
    globalThis.WebSocket = counting("global");
    try {
      const a = await KeyportClient.initialize({ url: agent.url });
      await a.pkcs11().info();
      a.close();
      const b = await KeyportClient.initialize({ url: agent.url, WebSocket: counting("config") });
      await b.pkcs11().info();
      b.close();
      // An origin needs a class that can send it: the global one is skipped for `ws` then.
      const c = await KeyportClient.initialize({ url: agent.url, origin: "https://o.example" });
      c.close();
      assert.deepEqual(made, ["global", "config"]);
      assert.equal(agent.connections.at(-1).origin, "https://o.example");
    } finally {
      delete globalThis.WebSocket;
      await agent.close();
    }
  });

  test("a WebSocket constructor that throws gives AGENT_UNAVAILABLE", async () => {
    class Broken {
      constructor() {
        throw new SyntaxError("The URL is invalid.");
      }
    }
    const err = await rejection(KeyportClient.initialize({ WebSocket: Broken }));
    assertUnavailable(err, /The URL is invalid/);
  });
});
