// A tiny stand-in for the agent: a `ws` server whose answers each test scripts.
import { once } from "node:events";
import { createServer } from "node:net";
import { WebSocketServer } from "ws";

export const INFO = {
  cryptoki_version: "2.40",
  manufacturer_id: "SoftHSM",
  flags: 0,
  library_description: "Implementation of PKCS11",
  library_version: "2.6",
};

export const SLOTS = [
  { slot_id: 7, description: "Slot 7", flags: 1, hardware_version: "2.6", firmware_version: "2.6" },
];

/** Canned results per method, as the agent would send them. */
export function cannedResult(method) {
  switch (method) {
    case "pkcs11.info":
      return INFO;
    case "pkcs11.slots":
    case "pkcs11.slotsWithTokenPresent":
      return SLOTS;
    case "pkcs11.token":
      return { slot_id: 7, label: "fake", pin_state: "ok" };
    case "pkcs11.certificates":
      return [{ base64: "MAA=", id: "01" }];
    case "pkcs11.signData":
      return "c2lnbmF0dXJl";
    case "pkcs11.verifySignedData":
      return true;
    default:
      return null;
  }
}

export function result(socket, id, value) {
  socket.send(JSON.stringify({ jsonrpc: "2.0", id, result: value }));
}

export function error(socket, id, error) {
  socket.send(JSON.stringify({ jsonrpc: "2.0", id, error }));
}

/**
 * Start a fake agent. `handler(request, socket, agent)` answers each request (default: the canned
 * result at once). `options.port` reuses a port; `options.verifyClient` can refuse handshakes.
 */
export async function startFakeAgent(handler, options = {}) {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: options.port ?? 0,
    ...(options.verifyClient ? { verifyClient: options.verifyClient } : {}),
  });
  await once(wss, "listening");
  const port = wss.address().port;
  const agent = {
    port,
    url: `ws://127.0.0.1:${port}`,
    /** Every request received, in order. */
    requests: [],
    /** One entry per WebSocket connection: { socket, origin }. */
    connections: [],
    /**
     * Resolves with the first request (already received or still to come) for which
     * `predicate(request)` is true: a test waits for the agent to have the request in hand.
     */
    received(predicate) {
      const found = agent.requests.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ predicate, resolve }));
    },
    async close() {
      for (const { socket } of agent.connections) socket.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
  const waiters = [];
  const answer = handler ?? ((req, socket) => result(socket, req.id, cannedResult(req.method)));
  wss.on("connection", (socket, req) => {
    agent.connections.push({ socket, origin: req.headers.origin });
    socket.on("message", (raw) => {
      const request = JSON.parse(String(raw));
      agent.requests.push(request);
      answer(request, socket, agent);
      for (const w of waiters.filter((w) => w.predicate(request))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(request);
      }
    });
  });
  return agent;
}

/** A port with nothing listening on it. */
export async function freePort() {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A TCP server that accepts connections and never answers (a hung handshake). */
export async function startSilentServer() {
  const sockets = new Set();
  const server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * `promise`, or a rejection naming `what` if it has not settled within `ms`: a test that waits
 * for an event fails instead of hanging when the event never comes.
 */
export function within(promise, what, ms = 5000) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * Resolves once `condition()` holds, polling every 5 ms; rejects naming `what` (and what
 * `detail()` says then) if it does not within `ms`, or at once if `failure` rejects first. The
 * polling stops either way: a loop left polling after a failed test keeps node's test process
 * alive for good (a CI run once hung so until its time ran out).
 */
export function waitUntil(condition, what, { ms = 5000, detail = () => "", failure } = {}) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    let timer;
    const stop = (error) => {
      clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    };
    failure?.then(undefined, (error) => stop(error));
    const poll = () => {
      if (condition()) return stop();
      if (Date.now() > deadline) {
        const more = detail();
        return stop(new Error(`${what}: not within ${ms} ms${more ? ` (${more})` : ""}`));
      }
      timer = setTimeout(poll, 5);
    };
    poll();
  });
}
