// pkcs11.onTokenEvent against a scripted stand-in for the agent: one subscription shared by the
// listeners, events routed by subscription id, unsubscribe when the last listener stops, and a
// new subscription after the agent restarts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { KeyportClient } from "../../dist/esm/index.js";
import { cannedResult, result, startFakeAgent, within } from "./fake-agent.mjs";

/** A stand-in that answers subscribe with ids 41, 42, … and unsubscribe with true. */
function subscribingAgent(options = {}) {
  let next = options.firstId ?? 41;
  return startFakeAgent((req, socket) => {
    if (req.method === "pkcs11.subscribeSlotEvents") {
      const id = next++;
      if (options.eventBeforeAnswer) notify(socket, id, { slot_id: 9, event: "inserted", token_label: "early" });
      result(socket, req.id, id);
    } else if (req.method === "pkcs11.unsubscribeSlotEvents") {
      result(socket, req.id, true);
    } else {
      result(socket, req.id, cannedResult(req.method));
    }
  }, options);
}

function notify(socket, subscription, event) {
  socket.send(
    JSON.stringify({
      jsonrpc: "2.0",
      method: "pkcs11.slotEvent",
      params: { subscription, result: { module: "/lib/p11.so", ...event } },
    }),
  );
}

/** A listener that records events and can wait for the n-th. */
function recorder() {
  const events = [];
  const waiting = [];
  const listener = (e) => {
    events.push(e);
    for (const w of waiting.filter((w) => events.length >= w.n)) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  };
  listener.events = events;
  listener.count = (n) =>
    events.length >= n ? Promise.resolve() : new Promise((resolve) => waiting.push({ n, resolve }));
  return listener;
}

describe("pkcs11.onTokenEvent", () => {
  test("one subscription for all listeners; events by subscription id; unsubscribed by the last to stop", async () => {
    const agent = await subscribingAgent();
    const client = await KeyportClient.initialize({ url: agent.url, module: { linux: "/lib/p11.so", mac: "x", win: "x" }, platform: "linux" });
    try {
      const p = client.pkcs11();
      const a = recorder();
      const b = recorder();
      const stopA = p.onTokenEvent(a);
      const stopB = p.onTokenEvent(b);
      const sub = await within(agent.received((r) => r.method === "pkcs11.subscribeSlotEvents"), "subscribe");
      assert.deepEqual(sub.params, { module: "/lib/p11.so" });
      // Let the answer arrive, then send events: one for another subscription, one for ours.
      await p.info();
      const socket = agent.connections[0].socket;
      notify(socket, 99, { slot_id: 1, event: "removed" });
      notify(socket, 41, { slot_id: 1, event: "removed", token_label: "card" });
      await within(a.count(1), "event to a");
      await within(b.count(1), "event to b");
      assert.deepEqual(a.events, [{ module: "/lib/p11.so", slot_id: 1, event: "removed", token_label: "card" }]);
      assert.equal(agent.requests.filter((r) => r.method === "pkcs11.subscribeSlotEvents").length, 1);

      stopA();
      stopA(); // twice is harmless
      notify(socket, 41, { slot_id: 1, event: "inserted", token_label: "card" });
      await within(b.count(2), "second event to b");
      assert.equal(a.events.length, 1, "a stopped listening");

      stopB();
      const unsub = await within(agent.received((r) => r.method === "pkcs11.unsubscribeSlotEvents"), "unsubscribe");
      assert.deepEqual(unsub.params, { subscription: 41 });
      notify(socket, 41, { slot_id: 1, event: "removed" });
      await p.info();
      assert.equal(b.events.length, 2, "nothing after the last listener stopped");
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("an event sent before the subscribe answer is not lost", async () => {
    const agent = await subscribingAgent({ eventBeforeAnswer: true });
    const client = await KeyportClient.initialize({ url: agent.url });
    try {
      const seen = recorder();
      const stop = client.pkcs11().onTokenEvent(seen);
      await within(seen.count(1), "the early event");
      assert.equal(seen.events[0].token_label, "early");
      stop();
    } finally {
      client.close();
      await agent.close();
    }
  });

  test("after the agent restarts, the client subscribes again and events flow", async () => {
    const first = await subscribingAgent();
    const client = await KeyportClient.initialize({ url: first.url });
    const errors = [];
    try {
      const seen = recorder();
      const stop = client.pkcs11().onTokenEvent(seen, { onError: (e) => errors.push(e.reason) });
      await within(first.received((r) => r.method === "pkcs11.subscribeSlotEvents"), "first subscribe");
      const port = first.port;
      await first.close();
      // Down for a moment: at least one try fails (AGENT_UNAVAILABLE), then the agent is back.
      await within(
        new Promise((resolve) => {
          const check = setInterval(() => {
            if (errors.length > 0) {
              clearInterval(check);
              resolve();
            }
          }, 20);
        }),
        "a failed resubscribe reported",
        8000,
      );
      assert.equal(errors[0], "AGENT_UNAVAILABLE");
      const second = await subscribingAgent({ port, firstId: 7 });
      try {
        await within(second.received((r) => r.method === "pkcs11.subscribeSlotEvents"), "subscribe again", 15_000);
        // Wait for the answer to be in (a call made now is answered after it).
        await client.pkcs11().info();
        notify(second.connections[0].socket, 7, { slot_id: 3, event: "inserted", token_label: "back" });
        await within(seen.count(1), "event after the restart");
        assert.equal(seen.events[0].token_label, "back");
        stop();
      } finally {
        client.close();
        await second.close();
      }
    } finally {
      client.close();
    }
  });
});
