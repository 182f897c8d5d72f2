// A page with the Keyport extension, without a browser: the extension's REAL content script and
// background (extension/*.js) run in Node `vm` contexts on a fake window and a fake extension API
// (runtime ports, connectNative), and the native-messaging host is a small in-process stand-in
// that follows the host's contract (hello → WebSocket to the agent with the origin it was told
// and X-Keyport-Door → ready; then relays). The real host and real browsers are in test/browser/.
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { WebSocket } from "ws";

const EXTENSION = join(dirname(fileURLToPath(import.meta.url)), "../../../extension");
const EXTENSION_ID = "mchpggbacmbihpiigmfcmknhfdhpojoo";

/** Let queued deliveries run. */
export const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/**
 * A window: `postMessage` delivers a `message` event to every listener a moment later, with
 * `source` the window that posted (`from`, by default this one) and the data structured-cloned.
 */
export class FakeWindow {
  constructor(origin) {
    const url = new URL(origin);
    this.location = { origin: url.origin, hostname: url.hostname, href: `${url.origin}/` };
    this.listeners = new Set();
    this.posted = [];
  }
  addEventListener(type, listener) {
    if (type === "message") this.listeners.add(listener);
  }
  removeEventListener(type, listener) {
    if (type === "message") this.listeners.delete(listener);
  }
  postMessage(data, targetOrigin, from = this) {
    if (targetOrigin !== "*" && targetOrigin !== this.location.origin) return; // as browsers do
    const event = { source: from, data: structuredClone(data), origin: from.location.origin };
    this.posted.push(event.data);
    setTimeout(() => {
      for (const listener of [...this.listeners]) listener(event);
    }, 0);
  }
}

/**
 * One end of a runtime port; `peer` is the other end. Messages are cloned and delivered later, in
 * order; a message posted before `disconnect()` still arrives, before the other end's
 * onDisconnect (as in browsers). An end that disconnected itself receives nothing more.
 */
class FakePort {
  constructor(name, sender) {
    this.name = name;
    this.sender = sender;
    this.peer = null;
    this.connected = true; // may post
    this.listening = true; // has not disconnected itself
    this.error = null;
    this.messageListeners = [];
    this.disconnectListeners = [];
    this.onMessage = { addListener: (f) => this.messageListeners.push(f) };
    this.onDisconnect = { addListener: (f) => this.disconnectListeners.push(f) };
  }
  postMessage(message) {
    if (!this.connected) throw new Error("Attempting to use a disconnected port object");
    const data = structuredClone(message);
    const peer = this.peer;
    setTimeout(() => {
      if (peer.listening) for (const f of peer.messageListeners) f(data, peer);
    }, 0);
  }
  disconnect() {
    if (!this.listening) return;
    this.connected = false;
    this.listening = false;
    this.peer.dropped(null);
  }
  /** The other end went away: tell this end's listeners (with `error`, as Firefox does). */
  dropped(error) {
    if (!this.connected) return;
    this.connected = false;
    this.error = error;
    setTimeout(() => {
      if (!this.listening) return;
      this.listening = false;
      for (const f of this.disconnectListeners) f(this);
    }, 0);
  }
}

function pair(name, sender) {
  const a = new FakePort(name, sender);
  const b = new FakePort(name, sender);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/**
 * The native-messaging host's stand-in, per the contract: the first message is the hello; it
 * opens a WebSocket to `agentUrl` with `Origin: <hello.origin>` and `X-Keyport-Door: extension`,
 * answers ready (or error AGENT_UNAVAILABLE), then relays JSON-RPC both ways.
 */
function stubHost(port, agentUrl, seen) {
  let ws = null;
  let opened = false;
  port.messageListeners.push((m) => {
    if (ws !== null) {
      ws.send(JSON.stringify(m));
      return;
    }
    seen.push(m);
    ws = new WebSocket(agentUrl, { origin: m.origin, headers: { "X-Keyport-Door": "extension" } });
    ws.on("open", () => {
      opened = true;
      port.postMessage({ keyport: "ready", agent: agentUrl });
    });
    ws.on("message", (raw) => port.connected && port.postMessage(JSON.parse(String(raw))));
    ws.on("error", () => {});
    ws.on("close", () => {
      if (!port.connected) return;
      if (!opened) port.postMessage({ keyport: "error", reason: "AGENT_UNAVAILABLE", message: `No agent at ${agentUrl}.` });
      setTimeout(() => port.disconnect(), 5); // the host exits
    });
  });
  port.disconnectListeners.push(() => ws?.close()); // stdin EOF
}

/**
 * The extension's background (the real background.js) with a native-messaging host: `host` is
 * `{ agentUrl }` for the stand-in host, or `"missing"` for none installed (change it with
 * `bg.host = …`). `bg.hellos` records every hello a host received.
 */
export async function startBackground(host) {
  const bg = { host, hellos: [], natives: 0, onConnect: [] };
  const chrome = {
    runtime: {
      id: EXTENSION_ID,
      lastError: undefined,
      onConnect: { addListener: (f) => bg.onConnect.push(f) },
      connectNative(name) {
        const [ours, theirs] = pair(name, null);
        bg.natives += 1;
        if (bg.host === "missing" || name !== "org.keyport.agent") {
          setTimeout(() => {
            // Chrome sets lastError during the callback; Firefox passes port.error.
            const error = { message: "Specified native messaging host not found." };
            chrome.runtime.lastError = error;
            ours.dropped(error);
            setTimeout(() => (chrome.runtime.lastError = undefined), 0);
          }, 0);
        } else {
          stubHost(theirs, bg.host.agentUrl, bg.hellos);
        }
        return ours;
      },
    },
  };
  vm.runInNewContext(await readFile(join(EXTENSION, "background.js"), "utf8"), { chrome, console, URL, JSON, setTimeout });
  return bg;
}

/**
 * A page at `origin` in tab `tabId`, with the extension's content script (the real content.js)
 * connected to `bg`. `origin` is the page's real origin: what the browser reports as the sender's.
 */
export async function openTab(bg, { origin, tabId = 1 }) {
  const win = new FakeWindow(origin);
  const chrome = {
    runtime: {
      id: EXTENSION_ID,
      getManifest: () => ({ version: "0.1.0" }),
      connect({ name }) {
        const sender = { id: EXTENSION_ID, tab: { id: tabId }, url: win.location.href, origin: win.location.origin, frameId: 0 };
        const [content, back] = pair(name, sender);
        setTimeout(() => {
          for (const f of bg.onConnect) f(back);
        }, 0);
        return content;
      },
    },
  };
  vm.runInNewContext(await readFile(join(EXTENSION, "content.js"), "utf8"), { chrome, window: win, console, JSON });
  return win;
}

/** Make `win` the global window the client sees (undo with the returned function). */
export function useWindow(win) {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "window");
  globalThis.window = win;
  return () => {
    if (saved) Object.defineProperty(globalThis, "window", saved);
    else delete globalThis.window;
  };
}
