// What the client tells a page about its browser's rules (Local Network Access) and about the
// agent's version, against a fake agent. The browser's permission API is simulated here; the same
// paths run in real Chromium in test/browser/public-page.test.mjs.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { KeyportClient, versionAtLeast } from "../../dist/esm/index.js";
import { error, result, startFakeAgent, within } from "./fake-agent.mjs";

/** What Chrome 156 says of itself (`navigator.userAgentData.brands`). */
const CHROME = [
  { brand: "Chromium", version: "156" },
  { brand: "Google Chrome", version: "156" },
  { brand: "Not=A?Brand", version: "24" },
];
/** Firefox has no `userAgentData` (null here: `undefined` would pick the default, Chrome). */
const FIREFOX = null;

/**
 * Pretend to be a page on `hostname` whose `loopback-network` permission is `state`, in a
 * browser with these `brands` (Chrome by default).
 */
function pretendPage(hostname, state, brands = CHROME) {
  const queries = [];
  globalThis.location = { hostname };
  Object.defineProperty(globalThis, "navigator", {
    configurable: true,
    value: {
      userAgentData: brands ? { brands } : undefined,
      permissions: {
        query: async (descriptor) => {
          queries.push(descriptor.name);
          if (descriptor.name !== "loopback-network") throw new TypeError("unknown permission");
          return { state: typeof state === "function" ? state() : state };
        },
      },
    },
  });
  return queries;
}

const savedNavigator = Object.getOwnPropertyDescriptor(globalThis, "navigator");

function restore() {
  delete globalThis.location;
  if (savedNavigator) Object.defineProperty(globalThis, "navigator", savedNavigator);
  else delete globalThis.navigator;
}

/** A WebSocket class whose sockets fail at once, as Chrome's do when it blocks them. */
class BlockedSocket {
  readyState = 0;
  onopen = null;
  onerror = null;
  onclose = null;
  onmessage = null;
  constructor() {
    queueMicrotask(() => {
      this.onerror?.({ message: "" });
      this.readyState = 3;
      this.onclose?.({ code: 1006 });
    });
  }
  send() {}
  close() {}
}

describe("Local Network Access", () => {
  let agent;
  before(async () => {
    agent = await startFakeAgent();
  });
  after(async () => {
    await agent.close();
  });
  afterEach(restore);

  test("denied: LOCAL_NETWORK_BLOCKED at once, without trying to connect", async () => {
    const queries = pretendPage("sign.example", "denied");
    let constructed = 0;
    class Counting extends BlockedSocket {
      constructor(...a) {
        super(...a);
        constructed += 1;
      }
    }
    const started = Date.now();
    const err = await KeyportClient.initialize({ url: agent.url, WebSocket: Counting }).catch((e) => e);
    assert.equal(err.reason, "LOCAL_NETWORK_BLOCKED", err.description);
    assert.equal(err.code, 2002);
    assert.equal(err.source, "client");
    assert.match(err.description, /site settings/);
    assert.equal(constructed, 0);
    assert.ok(Date.now() - started < 1000);
    assert.deepEqual(queries, ["loopback-network"]);
  });

  test("prompt, and the socket fails: LOCAL_NETWORK_BLOCKED, not AGENT_UNAVAILABLE", async () => {
    pretendPage("sign.example", "prompt");
    const err = await KeyportClient.initialize({ url: agent.url, WebSocket: BlockedSocket }).catch((e) => e);
    assert.equal(err.reason, "LOCAL_NETWORK_BLOCKED", err.description);
  });

  test("granted, and the socket fails: the agent is unavailable", async () => {
    pretendPage("sign.example", "granted");
    const err = await KeyportClient.initialize({ url: agent.url, WebSocket: BlockedSocket }).catch((e) => e);
    assert.equal(err.reason, "AGENT_UNAVAILABLE", err.description);
  });

  test("prompt while the person decides: the page hears permission-prompt, then connected", async () => {
    let state = "prompt";
    pretendPage("sign.example", () => state);
    // A socket that opens only when "the person" allows it.
    let allow;
    const allowed = new Promise((r) => (allow = r));
    const { WebSocket } = await import("ws");
    class WaitsForThePerson extends EventTarget {
      constructor(url) {
        super();
        this.inner = null;
        this.readyState = 0;
        allowed.then(() => {
          state = "granted";
          this.inner = new WebSocket(url);
          this.inner.onopen = () => {
            this.readyState = 1;
            this.onopen?.({});
          };
          this.inner.onmessage = (e) => this.onmessage?.({ data: e.data });
          this.inner.onclose = (e) => {
            this.readyState = 3;
            this.onclose?.({ code: e.code });
          };
          this.inner.onerror = (e) => this.onerror?.(e);
        });
      }
      send(data) {
        this.inner.send(data);
      }
      close() {
        this.inner?.close();
      }
    }
    const statuses = [];
    let prompted;
    const heardPrompt = new Promise((r) => (prompted = r));
    const connecting = KeyportClient.initialize({
      url: agent.url,
      WebSocket: WaitsForThePerson,
      connectTimeout: 200,
      onStatus: (s) => {
        statuses.push(s);
        if (s === "permission-prompt") prompted();
      },
    });
    // The connect timeout (200 ms) is not what bounds the wait while the browser asks.
    await within(heardPrompt, "the permission-prompt status");
    allow();
    const client = await within(connecting, "the connection once allowed");
    assert.deepEqual(statuses, ["connecting", "permission-prompt", "connected"]);
    assert.equal((await client.pkcs11().info()).success, true);
    client.close();
  });

  test("prompt with nobody answering: LOCAL_NETWORK_BLOCKED after localNetworkTimeout", async () => {
    pretendPage("sign.example", "prompt");
    class NeverOpens {
      readyState = 0;
      send() {}
      close() {}
    }
    const started = Date.now();
    const err = await KeyportClient.initialize({
      url: agent.url,
      WebSocket: NeverOpens,
      connectTimeout: 50,
      localNetworkTimeout: 400,
    }).catch((e) => e);
    assert.equal(err.reason, "LOCAL_NETWORK_BLOCKED", err.description);
    assert.ok(Date.now() - started >= 350, `gave up after ${Date.now() - started} ms`);
  });

  test("a page on this computer never asks for the permission", async () => {
    const queries = pretendPage("127.0.0.1", "denied");
    const client = await KeyportClient.initialize({ url: agent.url });
    assert.deepEqual(queries, []);
    client.close();
  });

  test("Chrome before 147 does not gate WebSockets: the permission is not trusted", async () => {
    pretendPage("sign.example", "prompt", [{ brand: "Chromium", version: "146" }]);
    const err = await KeyportClient.initialize({ url: agent.url, WebSocket: BlockedSocket }).catch((e) => e);
    assert.equal(err.reason, "AGENT_UNAVAILABLE", err.description);
  });

  test("Firefox reads `prompt` everywhere but lets sockets through: a failure is the agent's", async () => {
    pretendPage("sign.example", "prompt", FIREFOX);
    const statuses = [];
    const err = await KeyportClient.initialize({
      url: agent.url,
      WebSocket: BlockedSocket,
      onStatus: (s) => statuses.push(s),
    }).catch((e) => e);
    assert.equal(err.reason, "AGENT_UNAVAILABLE", err.description);
    assert.deepEqual(statuses, ["connecting"], "no permission-prompt notice");
  });

  test("Firefox with `denied` still tries the socket (it is not gated by default); its failure is the Block", async () => {
    pretendPage("sign.example", "denied", FIREFOX);
    const client = await KeyportClient.initialize({ url: agent.url });
    assert.equal((await client.pkcs11().info()).success, true);
    client.close();
    // With network.lna.websocket.enabled Firefox refuses the socket of a denied site: the
    // person's explicit Block is what they can act on (issue 22, item 5).
    const statuses = [];
    const err = await KeyportClient.initialize({
      url: agent.url,
      WebSocket: BlockedSocket,
      onStatus: (s) => statuses.push(s),
    }).catch((e) => e);
    assert.equal(err.reason, "LOCAL_NETWORK_BLOCKED", err.description);
    assert.equal(err.code, 2002);
    assert.match(err.description, /set to block/);
    assert.match(err.description, /may not be running/, "and it does not rule out the agent");
    assert.deepEqual(statuses, ["connecting"], "it was tried");
  });

  test("any browser: the person blocking the prompt while connecting is LOCAL_NETWORK_BLOCKED", async () => {
    let state = "prompt";
    pretendPage("sign.example", () => state, FIREFOX);
    class BlockedByThePerson extends BlockedSocket {
      constructor() {
        state = "denied";
        super();
      }
    }
    const err = await KeyportClient.initialize({ url: agent.url, WebSocket: BlockedByThePerson }).catch((e) => e);
    assert.equal(err.reason, "LOCAL_NETWORK_BLOCKED", err.description);
    assert.match(err.description, /blocked it/);
  });

  test("a browser without the permission keeps today's behaviour", async () => {
    pretendPage("sign.example", undefined);
    globalThis.navigator.permissions.query = async () => {
      throw new TypeError("'loopback-network' is not a valid permission name");
    };
    const err = await KeyportClient.initialize({ url: agent.url, WebSocket: BlockedSocket }).catch((e) => e);
    assert.equal(err.reason, "AGENT_UNAVAILABLE");
  });
});

describe("the agent's version", () => {
  const VERSION = { agent: "0.2.0", protocol: "1.1.0", methods: ["pkcs11.info"], features: [] };
  let agent;
  before(async () => {
    agent = await startFakeAgent((req, socket) => {
      if (req.method === "keyport.version") result(socket, req.id, VERSION);
      else result(socket, req.id, null);
    });
  });
  after(async () => {
    await agent.close();
  });

  test("agentInfo() answers keyport.version", async () => {
    const client = await KeyportClient.initialize({ url: agent.url });
    const info = await client.agentInfo();
    assert.deepEqual(info, { data: { ...VERSION, door: "websocket" }, success: true });
    client.close();
  });

  test("minAgentVersion: an older agent is AGENT_OUTDATED, a recent one connects", async () => {
    const ok = await KeyportClient.initialize({ url: agent.url, minAgentVersion: "0.2.0" });
    ok.close();
    const err = await KeyportClient.initialize({ url: agent.url, minAgentVersion: "0.10.1" }).catch((e) => e);
    assert.equal(err.reason, "AGENT_OUTDATED", err.description);
    assert.equal(err.code, 2003);
    assert.match(err.description, /0\.10\.1.*0\.2\.0/);
  });

  test("an agent that predates keyport.version is outdated for any minimum", async () => {
    const old = await startFakeAgent((req, socket) =>
      error(socket, req.id, { code: -32601, message: "Method not found" }),
    );
    const err = await KeyportClient.initialize({ url: old.url, minAgentVersion: "0.2.0" }).catch((e) => e);
    assert.equal(err.reason, "AGENT_OUTDATED", err.description);
    await old.close();
  });

  test("versions compare as semver", async () => {
    assert.ok(versionAtLeast("0.10.0", "0.9.9"));
    assert.ok(versionAtLeast("1.0.0", "1"));
    assert.ok(!versionAtLeast("0.2.0", "0.2.1"));
    assert.ok(versionAtLeast("v2.0.0-rc.1", "2.0.0"));
    assert.ok(!versionAtLeast("garbage", "0.1.0"));
    await assert.rejects(KeyportClient.initialize({ minAgentVersion: "soon" }), /minAgentVersion/);
  });
});
