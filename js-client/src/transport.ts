// One connection to the agent, JSON-RPC 2.0 requests multiplexed over it by id: a WebSocket to
// the agent, or the same messages through the Keyport browser extension (see extension.ts). The
// door is chosen when the connection opens (`transport`).

import {
  agentUnavailable,
  clientTimeout,
  extensionError,
  extensionUnavailable,
  fromRpcError,
  localNetworkBlocked,
  nativeHostUnavailable,
  type RestException,
} from "./errors.js";
import { DEFAULT_EXTENSION_TIMEOUT_MS, ExtensionSocket, helloExtension, pageWindow, type PageWindow } from "./extension.js";
import { isNode } from "./platform.js";
import { ERROR_CODES, type Door } from "./protocol.js";

/** What this client needs of a WebSocket: the browser's, `ws`'s, or any compatible one. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => unknown) | null;
  onmessage: ((event: any) => unknown) | null;
  onerror: ((event: any) => unknown) | null;
  onclose: ((event: any) => unknown) | null;
}

/**
 * A WebSocket class: called as `new WebSocket(url)`, or `new WebSocket(url, undefined, { origin })`
 * when an `origin` is configured (the `ws` package's signature).
 */
export type WebSocketConstructor = new (url: string, ...rest: any[]) => WebSocketLike;

const OPEN = 1;
// A variable, so that bundlers leave the optional peer dependency alone.
const WS_PACKAGE = "ws";

/**
 * Which door to the agent: `"websocket"` (ws://127.0.0.1), `"extension"` (the Keyport browser
 * extension and its native-messaging host), or `"auto"`: the extension when it answers a short
 * hello in this page, else the WebSocket.
 */
export type Transport = "auto" | "extension" | "websocket";

export interface ConnectionOptions {
  url: string;
  /** Default `"auto"`. */
  transport?: Transport;
  /** How long `auto`/`extension` wait for the extension's hello (default 300 ms). */
  extensionTimeout?: number;
  connectTimeout: number;
  WebSocket?: WebSocketConstructor;
  origin?: string;
  /** How long to wait while the browser asks the person for the loopback permission. */
  localNetworkTimeout?: number;
  /** Told what the connection is doing (see `ConnectionStatus`). */
  onStatus?: (status: ConnectionStatus) => void;
}

/**
 * What the connection is doing, for a page that wants to say so:
 * - `connecting`: opening the WebSocket;
 * - `permission-prompt`: the browser is asking the person whether this site may reach programs on
 *   this computer (Chrome's Local Network Access); the page can tell them to allow it;
 * - `connected`, `closed`.
 */
export type ConnectionStatus = "connecting" | "permission-prompt" | "connected" | "closed";

/** The state of the browser's loopback permission, or `undefined` where it does not exist. */
export type LoopbackPermission = "granted" | "denied" | "prompt" | undefined;

/** After this long without an open socket while the permission is `prompt`, say so. */
const PROMPT_NOTICE_MS = 300;

/** The first Chromium that applies Local Network Access to WebSockets. */
const CHROMIUM_LNA_WEBSOCKETS = 147;

/**
 * Whether this browser gates WebSockets to loopback behind the `loopback-network` permission:
 * Chromium 147+ (Chrome, Edge, and the others that say "Chromium" in
 * `navigator.userAgentData.brands`). Firefox has the permission too, but by default does not
 * apply it to WebSockets (`network.lna.websocket.enabled`), and reads `prompt` for every site:
 * there the permission says nothing about why a socket failed.
 */
export function lnaGatesWebSockets(): boolean {
  const brands = (
    globalThis as { navigator?: { userAgentData?: { brands?: { brand: string; version: string }[] } } }
  ).navigator?.userAgentData?.brands;
  if (!Array.isArray(brands)) return false;
  return brands.some((b) => b.brand === "Chromium" && Number.parseInt(b.version, 10) >= CHROMIUM_LNA_WEBSOCKETS);
}

/**
 * The browser's `loopback-network` permission for this page, where the browser has it (Chrome
 * 147+; Firefox knows the name but, by default, does not apply it to WebSockets). Pages on this
 * computer (`localhost`, `127.0.0.1`, `[::1]`) never need it.
 */
export async function loopbackPermission(): Promise<LoopbackPermission> {
  const g = globalThis as {
    location?: { hostname?: string };
    navigator?: { permissions?: { query?: (d: { name: string }) => Promise<{ state: string }> } };
  };
  const host = g.location?.hostname;
  if (host === undefined || ["localhost", "127.0.0.1", "[::1]", "::1"].includes(host)) return undefined;
  const query = g.navigator?.permissions?.query;
  if (typeof query !== "function") return undefined;
  try {
    const { state } = await query.call(g.navigator!.permissions, { name: "loopback-network" });
    return state === "granted" || state === "denied" || state === "prompt" ? state : undefined;
  } catch {
    return undefined; // a browser that does not know the permission
  }
}

interface Pending {
  method: string;
  resolve(result: unknown): void;
  reject(error: RestException): void;
  /** The socket the request went out on; `null` while it waits for the connection. */
  socket: WebSocketLike | null;
  /** Length of the message sent (to match an error the agent could not give an id). */
  size: number;
}

function errorText(event: unknown): string {
  const e = event as { message?: unknown; error?: { message?: unknown } } | null;
  if (e && typeof e.message === "string" && e.message) return e.message;
  if (e && e.error && typeof e.error.message === "string") return e.error.message;
  return "";
}

/** The WebSocket class to use: the configured one, the global one, or `ws` in Node. */
async function webSocketClass(options: ConnectionOptions): Promise<WebSocketConstructor> {
  if (options.WebSocket) return options.WebSocket;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  const node = isNode();
  // A global WebSocket cannot set the Origin header: in Node an `origin` needs `ws`.
  if (global && !(node && options.origin !== undefined)) return global;
  if (!node) {
    throw agentUnavailable("This environment has no WebSocket.");
  }
  try {
    const mod = (await import(/* webpackIgnore: true */ /* @vite-ignore */ WS_PACKAGE)) as Record<string, unknown>;
    const ctor = (mod.default ?? mod.WebSocket ?? mod) as WebSocketConstructor;
    if (typeof ctor !== "function") throw new TypeError("the ws module exports no WebSocket class");
    return ctor;
  } catch (cause) {
    throw agentUnavailable(
      "Node has no global WebSocket here: install the `ws` package (npm install ws) " +
        "or pass a WebSocket class as `WebSocket` in the config.",
      cause,
    );
  }
}

/** Told of each notification (a message with a `method` and no `id`) the agent sends. */
export type NotificationHandler = (params: unknown) => void;

export class Connection {
  private socket: WebSocketLike | null = null;
  private opening: Promise<WebSocketLike> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private readonly notificationHandlers = new Map<string, Set<NotificationHandler>>();
  private readonly closeHandlers = new Set<() => void>();
  /** The door of the open connection (or of the last one). */
  private currentDoor: Door | undefined;
  /** Once a connection opened, reconnections use the same door (no second hello). */
  private decided: Door | undefined;

  constructor(private readonly options: ConnectionOptions) {}

  /** The door of the open connection, or of the last one that was open. */
  get door(): Door | undefined {
    return this.currentDoor;
  }

  /** Requests sent or waiting for the connection, and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Resolves with an open socket: the current one, or a new connection. */
  connect(): Promise<WebSocketLike> {
    if (this.socket && this.socket.readyState === OPEN) return Promise.resolve(this.socket);
    if (!this.opening) {
      this.opening = this.open().finally(() => {
        this.opening = null;
      });
    }
    return this.opening;
  }

  /**
   * Send one request and resolve with its result, or reject with a RestException: the agent's
   * error, AGENT_UNAVAILABLE, or a client-side REQUEST_TIMEOUT after `timeoutMs` (connecting
   * included). The connection is opened (again) when needed.
   */
  call(method: string, params: object, timeoutMs: number): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(clientTimeout(method, timeoutMs));
      }, timeoutMs);
      const entry: Pending = {
        method,
        socket: null,
        size: 0,
        resolve: (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.pending.set(id, entry);
      this.connect().then(
        (socket) => {
          if (this.pending.get(id) !== entry) return; // timed out while connecting
          entry.socket = socket;
          try {
            const message = JSON.stringify({ jsonrpc: "2.0", id, method, params });
            entry.size = message.length;
            socket.send(message);
          } catch (cause) {
            this.pending.delete(id);
            entry.reject(agentUnavailable("Sending to the agent failed.", cause));
          }
        },
        (error: RestException) => {
          if (this.pending.delete(id)) entry.reject(error);
        },
      );
    });
  }

  /** Be told of every notification `method` the agent sends; returns a function that stops it. */
  onNotification(method: string, handler: NotificationHandler): () => void {
    let handlers = this.notificationHandlers.get(method);
    if (!handlers) {
      handlers = new Set();
      this.notificationHandlers.set(method, handlers);
    }
    handlers.add(handler);
    return () => {
      handlers.delete(handler);
    };
  }

  /** Be told when an open connection closes (the agent stopped, or `close()`); returns a function that stops it. */
  onClose(handler: () => void): () => void {
    this.closeHandlers.add(handler);
    return () => {
      this.closeHandlers.delete(handler);
    };
  }

  /** Whether a connection to the agent is open now. */
  get isOpen(): boolean {
    return this.socket !== null && this.socket.readyState === OPEN;
  }

  /** Close the connection; requests in flight fail with AGENT_UNAVAILABLE. */
  close(): void {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      this.failRequestsOn(socket, agentUnavailable("The client closed the connection."));
      try {
        socket.close(1000, "client closed");
      } catch {
        // already closing
      }
      this.closed();
    }
  }

  private closed(): void {
    for (const handler of [...this.closeHandlers]) {
      try {
        handler();
      } catch {
        // one listener must not stop the others
      }
    }
  }

  private status(status: ConnectionStatus): void {
    try {
      this.options.onStatus?.(status);
    } catch {
      // the page's hook must not break the connection
    }
  }

  /** Choose the door (see `Transport`) and open a connection through it. */
  private async open(): Promise<WebSocketLike> {
    const transport = this.options.transport ?? "auto";
    if (transport === "websocket" || this.decided === "websocket") return this.openWebSocket();
    const win = pageWindow();
    if (this.decided !== "extension") {
      const timeout = this.options.extensionTimeout ?? DEFAULT_EXTENSION_TIMEOUT_MS;
      const version = win ? await helloExtension(win, timeout) : undefined;
      if (version === undefined) {
        if (transport === "auto") return this.openWebSocket();
        throw extensionUnavailable(
          win
            ? `No Keyport extension answered in this page within ${timeout} ms.`
            : "This is not a web page: the extension door needs a browser window.",
        );
      }
    }
    try {
      return await this.openExtension(win!);
    } catch (error) {
      const e = error as RestException;
      // The extension is there but its host is not (an agent installed without the browser
      // connector, or for another browser): the WebSocket may still reach the agent.
      if (transport !== "auto" || this.decided === "extension" || e.reason !== "NATIVE_HOST_UNAVAILABLE") throw e;
      try {
        return await this.openWebSocket();
      } catch (ws) {
        const said = (e.cause as { message?: unknown } | undefined)?.message;
        throw nativeHostUnavailable(
          `${typeof said === "string" && said ? `(${said}) ` : ""}The WebSocket did not reach it either ` +
            `(${(ws as RestException).reason}).`,
          e,
        );
      }
    }
  }

  /** Through the Keyport extension: open once its native-messaging host has reached the agent. */
  private openExtension(win: PageWindow): Promise<WebSocketLike> {
    const connectTimeout = this.options.connectTimeout;
    this.status("connecting");
    return new Promise<WebSocketLike>((resolve, reject) => {
      const socket = new ExtensionSocket(win);
      let state: "connecting" | "open" | "abandoned" = "connecting";
      const timer = setTimeout(() => {
        if (state !== "connecting") return;
        state = "abandoned";
        socket.close();
        reject(agentUnavailable(`The Keyport extension did not reach the agent within ${connectTimeout} ms.`));
      }, connectTimeout);
      socket.onopen = () => {
        state = "open";
        clearTimeout(timer);
        this.opened(socket, "extension");
        resolve(socket);
      };
      socket.onmessage = (event: { data?: unknown }) => {
        this.receive(event.data, socket);
      };
      socket.onclose = (event: { code?: number } | undefined) => {
        clearTimeout(timer);
        if (state === "connecting") {
          state = "abandoned";
          const f = socket.failure;
          reject(
            f
              ? extensionError(f.reason, f.message)
              : agentUnavailable("The Keyport extension closed the connection before it reached the agent."),
          );
          return;
        }
        this.socketClosed(socket, event);
      };
    });
  }

  /** A socket is open: it is the connection now. */
  private opened(socket: WebSocketLike, door: Door): void {
    this.socket = socket;
    this.currentDoor = door;
    this.decided = door;
    this.status("connected");
  }

  /** An open socket closed: fail what was sent on it. */
  private socketClosed(socket: WebSocketLike, event: { code?: number } | undefined): void {
    const current = this.socket === socket;
    if (current) {
      this.socket = null;
      this.status("closed");
    }
    const code = event && typeof event.code === "number" ? ` (close code ${event.code})` : "";
    this.failRequestsOn(socket, agentUnavailable(`The connection to the agent closed before it answered${code}.`));
    if (current) this.closed();
  }

  /** Through a WebSocket to the agent (`url`). */
  private async openWebSocket(): Promise<WebSocketLike> {
    const Ctor = await webSocketClass(this.options);
    const { url, origin } = this.options;
    const permission = await loopbackPermission();
    // Where the browser enforces the permission on WebSockets, it is the whole story; elsewhere
    // (Firefox) only a change to `denied` while connecting says the person blocked it.
    const gated = permission !== undefined && lnaGatesWebSockets();
    if (gated && permission === "denied") {
      throw localNetworkBlocked("The browser's permission for this site is set to block.");
    }
    // While the browser may be asking the person, wait as long as they may take to answer.
    const asking = gated && permission === "prompt";
    const connectTimeout = asking
      ? Math.max(this.options.connectTimeout, this.options.localNetworkTimeout ?? 60_000)
      : this.options.connectTimeout;
    this.status("connecting");
    return new Promise<WebSocketLike>((resolve, reject) => {
      // A socket that fails while the permission is not granted was blocked by the browser
      // (under automation Chrome refuses at once instead of asking): say so, not "agent down".
      const failed = async (detail: string, cause?: unknown): Promise<RestException> => {
        if (permission !== undefined && permission !== "granted") {
          const now = await loopbackPermission();
          if (gated && now !== "granted" && now !== "denied") {
            return localNetworkBlocked(
              "The browser did not allow it (no answer to its prompt, or it cannot ask here).",
              cause,
            );
          }
          if (now === "denied") {
            // The person's explicit Block is what they can act on. (Firefox applies the
            // permission to WebSockets only with network.lna.websocket.enabled, and then reads
            // `denied` before the attempt; where it does not, a denied page's socket opens, so a
            // failure there may also be an agent that is not running: say both.)
            return localNetworkBlocked(
              gated || permission !== "denied"
                ? "The person or the browser blocked it."
                : "The permission for this site is set to block (if it is allowed and this persists, " +
                    "the Keyport agent may not be running).",
              cause,
            );
          }
        }
        return agentUnavailable(detail, cause);
      };
      let socket: WebSocketLike;
      try {
        socket = origin !== undefined ? new Ctor(url, undefined, { origin }) : new Ctor(url);
      } catch (cause) {
        reject(agentUnavailable(`Cannot connect to ${url}: ${errorText(cause) || String(cause)}`, cause));
        return;
      }
      let state: "connecting" | "open" | "abandoned" = "connecting";
      const promptNotice =
        asking
          ? setTimeout(() => {
              if (state === "connecting") this.status("permission-prompt");
            }, PROMPT_NOTICE_MS)
          : undefined;
      let lastError = "";
      const timer = setTimeout(() => {
        if (state !== "connecting") return;
        state = "abandoned";
        try {
          socket.close();
        } catch {
          // not open yet
        }
        clearTimeout(promptNotice);
        failed(`No answer from ${url} within ${connectTimeout} ms.`).then(reject);
      }, connectTimeout);

      socket.onopen = () => {
        if (state === "abandoned") {
          socket.close();
          return;
        }
        state = "open";
        clearTimeout(timer);
        clearTimeout(promptNotice);
        this.opened(socket, "websocket");
        resolve(socket);
      };
      socket.onerror = (event: unknown) => {
        lastError = errorText(event);
      };
      socket.onclose = (event: { code?: number } | undefined) => {
        clearTimeout(timer);
        clearTimeout(promptNotice);
        if (state === "connecting") {
          state = "abandoned";
          // Browsers do not say why (not running, or a 403 because the origin is not allowed).
          const why = lastError ? ` (${lastError})` : "";
          failed(`Could not connect to ${url}${why}: the agent is not running, or it refused this origin.`).then(
            reject,
          );
          return;
        }
        this.socketClosed(socket, event);
      };
      socket.onmessage = (event: { data?: unknown }) => {
        this.receive(event.data, socket);
      };
    });
  }

  private failRequestsOn(socket: WebSocketLike, error: RestException): void {
    for (const [id, entry] of this.pending) {
      if (entry.socket === socket) {
        this.pending.delete(id);
        entry.reject(error);
      }
    }
  }

  /**
   * An error answer with `"id": null`: the agent could not read the request's id. For a message
   * too large (-32007) that is the largest request in flight on this socket; otherwise the only
   * request in flight, if there is just one. Anything else cannot be matched and is dropped.
   */
  private matchNullId(socket: WebSocketLike, code: unknown): number | undefined {
    let best: [number, Pending] | undefined;
    let count = 0;
    for (const [id, entry] of this.pending) {
      if (entry.socket !== socket) continue;
      count += 1;
      if (!best || entry.size > best[1].size) best = [id, entry];
    }
    if (!best) return undefined;
    return code === ERROR_CODES.MESSAGE_TOO_LARGE || count === 1 ? best[0] : undefined;
  }

  private receive(data: unknown, socket: WebSocketLike): void {
    let message: unknown;
    if (typeof data === "object" && data !== null) {
      message = data; // through the extension: already a JSON value
    } else {
      try {
        message = JSON.parse(typeof data === "string" ? data : String(data));
      } catch {
        return; // not JSON: nothing we could match to a request
      }
    }
    for (const response of Array.isArray(message) ? message : [message]) {
      if (typeof response !== "object" || response === null) continue;
      const r = response as { id?: unknown; result?: unknown; error?: unknown; method?: unknown; params?: unknown };
      if (!("id" in r) && typeof r.method === "string") {
        for (const handler of [...(this.notificationHandlers.get(r.method) ?? [])]) {
          try {
            handler(r.params);
          } catch {
            // the page's listener must not break the connection
          }
        }
        continue;
      }
      let id = r.id;
      if (id === null && typeof r.error === "object" && r.error !== null) {
        id = this.matchNullId(socket, (r.error as { code?: unknown }).code);
      }
      if (typeof id !== "number") continue;
      const entry = this.pending.get(id);
      if (!entry) continue; // timed out or unknown: ignore the late answer
      this.pending.delete(id);
      if ("error" in r && r.error !== undefined) entry.reject(fromRpcError(r.error));
      else entry.resolve(r.result);
    }
  }
}
