// The extension door, page side: the Keyport browser extension's content script, reached with
// tagged `window.postMessage`s in the page's own window. The content script relays to the
// extension, which starts the agent's native-messaging host with the page's origin as the BROWSER
// reports it; the page never says which origin it is. `ExtensionSocket` looks like a WebSocket to
// the rest of the client, so every method and notification works the same through either door.

import type { WebSocketLike } from "./transport.js";

/** The tag of messages from the page to the extension's content script. */
export const TO_EXTENSION = "to-extension";
/** The tag of messages from the content script to the page. */
export const FROM_EXTENSION = "from-extension";
/** How long `auto` waits for the extension's hello before it uses the WebSocket. */
export const DEFAULT_EXTENSION_TIMEOUT_MS = 300;

/** A message event as far as this client looks at it. */
interface PageMessageEvent {
  source?: unknown;
  data?: unknown;
}

/** What this client needs of the page's window. */
export interface PageWindow {
  postMessage(message: unknown, targetOrigin: string): void;
  addEventListener(type: "message", listener: (event: PageMessageEvent) => void): void;
  removeEventListener(type: "message", listener: (event: PageMessageEvent) => void): void;
  location?: { origin?: string };
}

/** The page's window, when this code runs in one (not in Node or a worker). */
export function pageWindow(): PageWindow | undefined {
  const w = (globalThis as { window?: Partial<PageWindow> }).window;
  if (!w || typeof w.postMessage !== "function" || typeof w.addEventListener !== "function") return undefined;
  if (typeof w.removeEventListener !== "function") return undefined;
  return w as PageWindow;
}

/** The target origin for messages to our own window ("*" only where the origin is opaque). */
function ownOrigin(win: PageWindow): string {
  const origin = win.location?.origin;
  return typeof origin === "string" && origin !== "null" && origin !== "" ? origin : "*";
}

/** A random id, unique among this page's connections (and unguessable by other windows). */
function randomId(): string {
  const c = (globalThis as { crypto?: { getRandomValues?<T extends Uint8Array>(a: T): T } }).crypto;
  const bytes = new Uint8Array(12);
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A message from the content script to this window, or undefined for anything else. */
function fromExtension(win: PageWindow, event: PageMessageEvent): Record<string, unknown> | undefined {
  // Only messages posted in this window: another window (a frame, an opener) cannot pose as the
  // extension.
  if (event.source !== win) return undefined;
  const d = event.data;
  if (typeof d !== "object" || d === null) return undefined;
  const m = d as Record<string, unknown>;
  return m.keyport === FROM_EXTENSION ? m : undefined;
}

/**
 * Ask the extension's content script whether it is in this page: resolves with the extension's
 * version, or `undefined` when nothing answered within `timeoutMs`.
 */
export function helloExtension(win: PageWindow, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const nonce = randomId();
    const done = (version: string | undefined) => {
      clearTimeout(timer);
      win.removeEventListener("message", listener);
      resolve(version);
    };
    const listener = (event: PageMessageEvent) => {
      const m = fromExtension(win, event);
      if (m && m.type === "hello" && m.nonce === nonce) done(typeof m.extension === "string" ? m.extension : "unknown");
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    win.addEventListener("message", listener);
    win.postMessage({ keyport: TO_EXTENSION, type: "hello", nonce }, ownOrigin(win));
  });
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

/**
 * One connection to the agent through the extension, with a WebSocket's shape: `onopen` once the
 * native-messaging host has reached the agent, `onmessage` with each JSON-RPC message (as an
 * object, in `data`), `onclose` when either side ends it. When it fails before opening,
 * `failure` holds the extension's `{ reason, message }`.
 */
export class ExtensionSocket implements WebSocketLike {
  readyState = CONNECTING;
  onopen: ((event: any) => unknown) | null = null;
  onmessage: ((event: any) => unknown) | null = null;
  onerror: ((event: any) => unknown) | null = null;
  onclose: ((event: any) => unknown) | null = null;
  /** Why the extension could not connect: its reason (e.g. NATIVE_HOST_UNAVAILABLE) and message. */
  failure: { reason: unknown; message: unknown } | undefined;
  /** The agent's URL, as the native-messaging host reported it. */
  agent: string | undefined;
  readonly port = randomId();
  private readonly listener = (event: PageMessageEvent) => this.receive(event);

  constructor(private readonly win: PageWindow) {
    win.addEventListener("message", this.listener);
    this.post({ type: "open" });
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error("the connection through the extension is not open");
    this.post({ type: "message", text: data });
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === CLOSED) return;
    this.post({ type: "close" });
    this.finish(code, reason);
  }

  private post(message: Record<string, unknown>): void {
    this.win.postMessage({ keyport: TO_EXTENSION, port: this.port, ...message }, ownOrigin(this.win));
  }

  private finish(code: number, reason: string): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.win.removeEventListener("message", this.listener);
    this.onclose?.({ code, reason, wasClean: code === 1000 });
  }

  private receive(event: PageMessageEvent): void {
    const m = fromExtension(this.win, event);
    if (!m || m.port !== this.port || this.readyState === CLOSED) return;
    switch (m.type) {
      case "ready":
        if (this.readyState !== CONNECTING) return;
        this.agent = typeof m.agent === "string" ? m.agent : undefined;
        this.readyState = OPEN;
        this.onopen?.({});
        return;
      case "message":
        if (this.readyState === OPEN) this.onmessage?.({ data: m.message });
        return;
      case "error":
        this.failure = { reason: m.reason, message: m.message };
        this.onerror?.({ message: typeof m.message === "string" ? m.message : "" });
        this.finish(1006, typeof m.reason === "string" ? m.reason : "");
        return;
      case "close":
        this.finish(1006, "closed by the extension");
        return;
      default:
        return;
    }
  }
}
