// The entry point: a client holds one connection to the agent and hands out PKCS #11 objects.

import { invalidConfig, type RestException } from "./errors.js";
import { Pkcs11, withCallback, type Callback } from "./pkcs11.js";
import { detectOs, moduleFor, type ModuleConfig, type OsName } from "./platform.js";
import { DEFAULT_PORT } from "./protocol.js";
import { Connection, type WebSocketConstructor } from "./transport.js";

export const DEFAULT_URL = `ws://127.0.0.1:${DEFAULT_PORT}`;
/** Every method but signData: a little over the agent's own 30 s limit per token call. */
export const DEFAULT_TIMEOUT_MS = 35_000;
/** signData may wait for the person's consent (60 s by default in the agent) and then the token. */
export const DEFAULT_SIGN_TIMEOUT_MS = 120_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export interface KeyportConfig {
  /** The agent's WebSocket URL. Default `ws://127.0.0.1:10443`. */
  url?: string;
  /** Milliseconds to wait for an answer to any method but signData. Default 35000. */
  timeout?: number;
  /** Milliseconds to wait for signData, consent prompt included. Default 120000. */
  signTimeout?: number;
  /** Milliseconds to wait for the WebSocket handshake. Default 10000. */
  connectTimeout?: number;
  /** The PKCS #11 library per OS; `client.pkcs11(moduleConfig)` can override it. */
  module?: ModuleConfig;
  /**
   * The WebSocket class to use. Default: the global `WebSocket`; in Node without one (Node 20),
   * the `ws` package, loaded when the first connection is made.
   */
  WebSocket?: WebSocketConstructor;
  /**
   * Node only: the `Origin` header to send (through `ws`, or the `WebSocket` class given, called as
   * `new WebSocket(url, undefined, { origin })`). Browsers always send the page's origin.
   */
  origin?: string;
  /** Override the detected operating system (which `module` entry is used). */
  platform?: OsName;
}

/** The configuration in force, defaults filled in. */
export interface ResolvedConfig {
  url: string;
  timeout: number;
  signTimeout: number;
  connectTimeout: number;
  module: ModuleConfig | undefined;
  origin: string | undefined;
  platform: OsName | undefined;
}

function positive(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw invalidConfig(`\`${name}\` must be a positive number of milliseconds.`);
  }
  return value;
}

function resolve(config: KeyportConfig): ResolvedConfig {
  if (typeof config !== "object" || config === null) throw invalidConfig("the config must be an object.");
  const url = config.url ?? DEFAULT_URL;
  if (typeof url !== "string" || !/^wss?:\/\/[^/]/i.test(url)) {
    throw invalidConfig("`url` must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:10443.");
  }
  if (config.WebSocket !== undefined && typeof config.WebSocket !== "function") {
    throw invalidConfig("`WebSocket` must be a WebSocket class.");
  }
  if (config.platform !== undefined && !["linux", "mac", "win"].includes(config.platform)) {
    throw invalidConfig("`platform` must be \"linux\", \"mac\" or \"win\".");
  }
  return {
    url,
    timeout: positive("timeout", config.timeout, DEFAULT_TIMEOUT_MS),
    signTimeout: positive("signTimeout", config.signTimeout, DEFAULT_SIGN_TIMEOUT_MS),
    connectTimeout: positive("connectTimeout", config.connectTimeout, DEFAULT_CONNECT_TIMEOUT_MS),
    module: config.module,
    origin: config.origin,
    platform: config.platform ?? detectOs(),
  };
}

export class KeyportClient {
  readonly config: Readonly<ResolvedConfig>;
  private readonly connection: Connection;

  private constructor(config: ResolvedConfig, WebSocket: WebSocketConstructor | undefined) {
    this.config = Object.freeze(config);
    const options: ConstructorParameters<typeof Connection>[0] = {
      url: config.url,
      connectTimeout: config.connectTimeout,
    };
    if (WebSocket) options.WebSocket = WebSocket;
    if (config.origin !== undefined) options.origin = config.origin;
    this.connection = new Connection(options);
  }

  /**
   * Connect to the agent. Resolves with a client whose connection is open; rejects with a
   * RestException (AGENT_UNAVAILABLE when the agent is not running or refuses this origin, so the
   * page can ask the person to start or install it). Later calls reconnect when needed.
   */
  static initialize(config: KeyportConfig = {}, callback?: Callback<KeyportClient>): Promise<KeyportClient> {
    let promise: Promise<KeyportClient>;
    try {
      const client = new KeyportClient(resolve(config), config.WebSocket);
      promise = client.connection.connect().then(() => client);
    } catch (error) {
      promise = Promise.reject(error as RestException);
    }
    return withCallback(promise, callback);
  }

  /**
   * The PKCS #11 methods. `moduleConfig` (or else the config's `module`) picks the library for the
   * running OS; with none, the agent's default library is used.
   */
  pkcs11(moduleConfig?: ModuleConfig): Pkcs11 {
    return new Pkcs11({
      connection: this.connection,
      module: moduleFor(moduleConfig ?? this.config.module, this.config.platform),
      timeout: this.config.timeout,
      signTimeout: this.config.signTimeout,
    });
  }

  /** Close the connection (requests in flight fail with AGENT_UNAVAILABLE). A later call reconnects. */
  close(): void {
    this.connection.close();
  }
}
