// Keyport extension, content script: the bridge between a page and the extension's background.
//
// The page talks to it with tagged messages in its own window (window.postMessage):
//   page → here   { keyport: "to-extension", type: "hello", nonce }            answered at once
//                 { keyport: "to-extension", type: "open", port }              one connection to the agent
//                 { keyport: "to-extension", type: "message", port, text }     one JSON-RPC message (JSON text)
//                 { keyport: "to-extension", type: "close", port }
//   here → page   { keyport: "from-extension", type: "hello", nonce, extension }
//                 { keyport: "from-extension", type: "ready" | "error" | "message" | "close", port, … }
// Each page connection is one runtime port to the background, which starts the native-messaging
// host for it. Nothing the page sends names an origin: the background takes the page's origin
// from the browser (port.sender). Messages from other windows (frames, openers) are ignored, so a
// page cannot speak with another page's origin.
"use strict";

(() => {
  const api = globalThis.browser ?? globalThis.chrome;
  const TO_EXTENSION = "to-extension";
  const FROM_EXTENSION = "from-extension";
  const VERSION = api.runtime.getManifest().version;
  /** Chrome's limit on a message to a native-messaging host; the agent's own cap is far lower. */
  const MAX_MESSAGE_CHARS = 64 * 1024 * 1024;
  /** A page's connection ids: short printable strings. */
  const PORT_ID = /^[A-Za-z0-9_-]{1,64}$/;

  /** The page's connections: its port id → the runtime port to the background. */
  const ports = new Map();

  function toPage(message) {
    const origin = window.location.origin;
    window.postMessage({ keyport: FROM_EXTENSION, ...message }, origin && origin !== "null" ? origin : "*");
  }

  /** A JSON-RPC error for each request in `message` (an object or a batch), without asking anyone. */
  function answerWithError(port, message, code, reason, text) {
    const requests = Array.isArray(message) ? message : [message];
    const answers = requests
      .filter((r) => r && typeof r === "object" && "id" in r)
      .map((r) => ({ jsonrpc: "2.0", id: r.id, error: { code, message: text, data: { reason } } }));
    if (answers.length === 0) return;
    toPage({ type: "message", port, message: Array.isArray(message) ? answers : answers[0] });
  }

  function open(id) {
    if (ports.has(id)) {
      toPage({ type: "error", port: id, reason: "INVALID_REQUEST", message: "This connection id is already in use." });
      return;
    }
    let runtimePort;
    try {
      runtimePort = api.runtime.connect({ name: "keyport" });
    } catch (e) {
      // The extension was updated or disabled since this page loaded.
      toPage({
        type: "error",
        port: id,
        reason: "EXTENSION_UNAVAILABLE",
        message: `The Keyport extension cannot be reached from this page (${e && e.message}); reload the page.`,
      });
      return;
    }
    ports.set(id, runtimePort);
    runtimePort.onMessage.addListener((m) => {
      if (m && typeof m === "object" && typeof m.type === "string") toPage({ ...m, port: id });
    });
    runtimePort.onDisconnect.addListener(() => {
      if (ports.get(id) !== runtimePort) return;
      ports.delete(id);
      toPage({ type: "close", port: id });
    });
  }

  function relay(id, text) {
    const runtimePort = ports.get(id);
    if (!runtimePort || typeof text !== "string") return;
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      toPage({
        type: "message",
        port: id,
        message: { jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } },
      });
      return;
    }
    if (text.length > MAX_MESSAGE_CHARS) {
      answerWithError(id, message, -32007, "MESSAGE_TOO_LARGE", "The request is larger than the browser passes to the agent.");
      return;
    }
    try {
      runtimePort.postMessage({ type: "message", message });
    } catch {
      ports.delete(id);
      toPage({ type: "close", port: id });
    }
  }

  function close(id) {
    const runtimePort = ports.get(id);
    if (!runtimePort) return;
    ports.delete(id);
    runtimePort.disconnect();
  }

  window.addEventListener("message", (event) => {
    // Only what the page posts in its own window.
    if (event.source !== window) return;
    const d = event.data;
    if (!d || typeof d !== "object" || d.keyport !== TO_EXTENSION || typeof d.type !== "string") return;
    if (d.type === "hello") {
      if (typeof d.nonce === "string" && d.nonce.length <= 64) toPage({ type: "hello", nonce: d.nonce, extension: VERSION });
      return;
    }
    if (typeof d.port !== "string" || !PORT_ID.test(d.port)) return;
    switch (d.type) {
      case "open":
        open(d.port);
        break;
      case "message":
        relay(d.port, d.text);
        break;
      case "close":
        close(d.port);
        break;
      default:
        break;
    }
  });
})();
