// Keyport extension, background: one native-messaging host per page connection.
//
// The content script opens a runtime port named "keyport" for each connection a page asks for.
// For each, this starts the host (`connectNative("org.keyport.agent")`, the `keyport` binary),
// sends it the hello with the page's origin AS THE BROWSER REPORTS IT (port.sender), and relays
// JSON-RPC messages both ways once the host says it reached the agent. The agent then judges the
// origin with the same lists, consent and limits as for a WebSocket. Per tab, at most
// MAX_IN_FLIGHT requests wait for an answer (the extra ones get a JSON-RPC BUSY error at once),
// and at most MAX_PORTS_PER_TAB connections (each is a host process) are open.
"use strict";

const api = globalThis.browser ?? globalThis.chrome;
const HOST = "org.keyport.agent";
const MAX_IN_FLIGHT = 64;
const MAX_PORTS_PER_TAB = 8;
const BUSY = 1603;

/** Per tab: the connections open and the requests in flight over all of them. */
const tabs = new Map();

function tabState(key) {
  let tab = tabs.get(key);
  if (!tab) {
    tab = { ports: 0, inFlight: 0 };
    tabs.set(key, tab);
  }
  return tab;
}

function releaseTab(key, tab) {
  if (tab.ports === 0 && tab.inFlight === 0) tabs.delete(key);
}

/**
 * The origin of the page (or frame) behind `sender`, as the browser knows it, or null. Chrome
 * gives `sender.origin`; Firefox gives `sender.url` (and `origin` in recent versions).
 */
function originOf(sender) {
  let origin = typeof sender.origin === "string" ? sender.origin : null;
  if (!origin && typeof sender.url === "string") {
    try {
      origin = new URL(sender.url).origin;
    } catch {
      origin = null;
    }
  }
  if (!origin || origin === "null" || !/^https?:\/\//.test(origin)) return null;
  return origin;
}

/** The reason for a native port that closed before the host answered the hello. */
function hostFailure(text) {
  const message = text || "The browser closed the connection to the native-messaging host.";
  // Chrome: "Specified native messaging host not found.", "Access to the specified native
  // messaging host is forbidden.", "Failed to start native messaging host.", "Native host has
  // exited."; Firefox: "No such native application org.keyport.agent", "An unexpected error occurred".
  return { reason: "NATIVE_HOST_UNAVAILABLE", message };
}

/** The request ids in a JSON-RPC message (an object or a batch): the entries that expect an answer. */
function requestsIn(message) {
  const entries = Array.isArray(message) ? message : [message];
  return entries.filter((m) => m && typeof m === "object" && typeof m.method === "string" && "id" in m);
}

/** The ids of answers in a message from the agent. */
function answersIn(message) {
  const entries = Array.isArray(message) ? message : [message];
  return entries.filter((m) => m && typeof m === "object" && typeof m.method !== "string" && "id" in m);
}

function idKey(id) {
  return JSON.stringify(id);
}

function busyAnswer(request) {
  return {
    jsonrpc: "2.0",
    id: request.id,
    error: {
      code: BUSY,
      message: `Too many requests are waiting in the Keyport extension for this tab (at most ${MAX_IN_FLIGHT}).`,
      data: { reason: "BUSY" },
    },
  };
}

api.runtime.onConnect.addListener((page) => {
  if (page.name !== "keyport") return;
  const sender = page.sender || {};
  // Only our own content script, in a tab.
  if (sender.id !== api.runtime.id || !sender.tab || typeof sender.tab.id !== "number") {
    page.disconnect();
    return;
  }
  const origin = originOf(sender);
  if (!origin) {
    page.postMessage({ type: "error", reason: "AGENT_UNAVAILABLE", message: "This page has no web origin the agent could judge." });
    page.disconnect();
    return;
  }
  const tabKey = String(sender.tab.id);
  const tab = tabState(tabKey);
  if (tab.ports >= MAX_PORTS_PER_TAB) {
    page.postMessage({
      type: "error",
      reason: "BUSY",
      message: `This tab already has ${MAX_PORTS_PER_TAB} connections to the agent open.`,
    });
    page.disconnect();
    return;
  }
  tab.ports += 1;

  /** "hello" until the host answers, then "open"; "closed" once either side is gone. */
  let state = "hello";
  /** Messages from the page while the host starts. */
  const queue = [];
  /** This connection's requests in flight: id → its size (to settle an answer with id null). */
  const pending = new Map();
  let host;

  const toPage = (m) => {
    try {
      page.postMessage(m);
    } catch {
      // the page went away; its onDisconnect ends this connection
    }
  };

  const settle = (id) => {
    if (pending.delete(idKey(id))) tab.inFlight -= 1;
  };

  const finish = (last) => {
    if (state === "closed") return;
    state = "closed";
    tab.ports -= 1;
    tab.inFlight -= pending.size;
    pending.clear();
    releaseTab(tabKey, tab);
    if (last) toPage(last);
    try {
      page.disconnect();
    } catch {
      // already
    }
    try {
      host?.disconnect();
    } catch {
      // already
    }
  };

  const toHost = (m) => {
    try {
      host.postMessage(m);
    } catch {
      finish({ type: "close" });
    }
  };

  try {
    host = api.runtime.connectNative(HOST);
  } catch (e) {
    finish({ type: "error", ...hostFailure(e && e.message) });
    return;
  }

  host.onMessage.addListener((message) => {
    if (state === "closed") return;
    if (state === "hello") {
      if (message && message.keyport === "ready") {
        state = "open";
        toPage({ type: "ready", agent: typeof message.agent === "string" ? message.agent : undefined });
        for (const m of queue.splice(0)) toHost(m);
      } else if (message && message.keyport === "error") {
        finish({
          type: "error",
          reason: typeof message.reason === "string" ? message.reason : "AGENT_UNAVAILABLE",
          message: typeof message.message === "string" ? message.message : "",
        });
      } else {
        finish({ type: "error", ...hostFailure("The native-messaging host did not answer the hello as Keyport's does.") });
      }
      return;
    }
    for (const answer of answersIn(message)) {
      if (answer.id === null) {
        // The agent could not read a request's id (e.g. too large): the largest one in flight.
        let largest = null;
        for (const [key, size] of pending) if (largest === null || size > pending.get(largest)) largest = key;
        if (largest !== null && pending.delete(largest)) tab.inFlight -= 1;
      } else {
        settle(answer.id);
      }
    }
    toPage({ type: "message", message });
  });

  host.onDisconnect.addListener((port) => {
    const error = (port && port.error) || api.runtime.lastError;
    const text = error && error.message;
    if (state === "hello") finish({ type: "error", ...hostFailure(text) });
    else finish({ type: "close" });
  });

  page.onMessage.addListener((m) => {
    if (state === "closed" || !m || m.type !== "message") return;
    const message = m.message;
    const requests = requestsIn(message);
    // Bounded: requests waiting for an answer in this tab, and anything queued while the host starts.
    const full = tab.inFlight + requests.length > MAX_IN_FLIGHT || (state === "hello" && queue.length >= MAX_IN_FLIGHT);
    if (full) {
      if (requests.length > 0) {
        const answers = requests.map(busyAnswer);
        toPage({ type: "message", message: Array.isArray(message) ? answers : answers[0] });
      }
      return;
    }
    const size = requests.length > 0 ? JSON.stringify(message).length : 0;
    for (const r of requests) {
      if (!pending.has(idKey(r.id))) {
        pending.set(idKey(r.id), size);
        tab.inFlight += 1;
      }
    }
    if (state === "hello") queue.push(message);
    else toHost(message);
  });

  page.onDisconnect.addListener(() => finish(null));

  toHost({ keyport: "hello", version: 1, origin });
});
