// The entry point: a client holds one connection to the agent and hands out PKCS #11 objects.

import { agentOutdated, invalidConfig, type RestException } from "./errors.js";
import { Pkcs11, withCallback, type Callback, type DataResult } from "./pkcs11.js";
import { detectOs, moduleFor, type ModuleConfig, type OsName } from "./platform.js";
import { DEFAULT_EXTENSION_TIMEOUT_MS } from "./extension.js";
import { DEFAULT_PORT, METHODS, type Door, type VersionResult } from "./protocol.js";
import { Connection, type ConnectionStatus, type Transport, type WebSocketConstructor } from "./transport.js";

export const DEFAULT_URL = `ws://127.0.0.1:${DEFAULT_PORT}`;
/** Every method but signData: a little over the agent's own 30 s limit per token call. */
export const DEFAULT_TIMEOUT_MS = 35_000;
/** signData may wait for the person's consent (60 s by default in the agent) and then the token. */
export const DEFAULT_SIGN_TIMEOUT_MS = 120_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** How long the person may take to answer the browser's "access this device" prompt. */
export const DEFAULT_LOCAL_NETWORK_TIMEOUT_MS = 60_000;

/**
 * `agentInfo()`'s answer: the agent's version, the protocol's, its methods and features, and the
 * door this client reaches it through (`"extension"` or `"websocket"`).
 */
export type AgentInfoResponse = DataResult<VersionResult & { door: Door }>;

export interface KeyportConfig {
  /**
   * Which door to the agent: `"auto"` (default: the Keyport browser extension when it answers a
   * short hello in this page, else the WebSocket), `"extension"` (only the extension:
   * EXTENSION_UNAVAILABLE without it) or `"websocket"` (only `url`).
   */
  transport?: Transport;
  /** Milliseconds to wait for the extension's hello (`auto`, `extension`). Default 300. */
  extensionTimeout?: number;
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
  /**
   * Milliseconds to wait while the browser asks the person whether this site may reach programs
   * on this computer (Chrome's Local Network Access prompt). Default 60000.
   */
  localNetworkTimeout?: number;
  /**
   * Told what the connection does: `"connecting"`, `"permission-prompt"` (the browser is asking
   * the person; say "allow access in your browser's prompt"), `"connected"`, `"closed"`.
   */
  onStatus?: (status: ConnectionStatus) => void;
  /**
   * The oldest agent this page works with (semver, e.g. `"0.2.0"`): `initialize` rejects an older
   * one with AGENT_OUTDATED, so the page can ask the person to update it.
   */
  minAgentVersion?: string;
}

/** The configuration in force, defaults filled in. */
export interface ResolvedConfig {
  transport: Transport;
  extensionTimeout: number;
  url: string;
  timeout: number;
  signTimeout: number;
  connectTimeout: number;
  module: ModuleConfig | undefined;
  origin: string | undefined;
  platform: OsName | undefined;
  localNetworkTimeout: number;
  minAgentVersion: string | undefined;
}

/** `major.minor.patch` as numbers (missing parts are 0); undefined if it is not a version. */
function semver(v: string): [number, number, number] | undefined {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)] : undefined;
}

/** Whether `have` is at least `need` (both semver). */
export function versionAtLeast(have: string, need: string): boolean {
  const a = semver(have);
  const b = semver(need);
  if (!a || !b) return false;
  for (let i = 0; i < 3; i++) {
    if (a[i]! !== b[i]!) return a[i]! > b[i]!;
  }
  return true;
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
  const transport = config.transport ?? "auto";
  if (!["auto", "extension", "websocket"].includes(transport)) {
    throw invalidConfig('`transport` must be "auto", "extension" or "websocket".');
  }
  if (config.WebSocket !== undefined && typeof config.WebSocket !== "function") {
    throw invalidConfig("`WebSocket` must be a WebSocket class.");
  }
  if (config.platform !== undefined && !["linux", "mac", "win"].includes(config.platform)) {
    throw invalidConfig("`platform` must be \"linux\", \"mac\" or \"win\".");
  }
  if (config.onStatus !== undefined && typeof config.onStatus !== "function") {
    throw invalidConfig("`onStatus` must be a function.");
  }
  if (config.minAgentVersion !== undefined && (typeof config.minAgentVersion !== "string" || !semver(config.minAgentVersion))) {
    throw invalidConfig("`minAgentVersion` must be a version such as \"0.2.0\".");
  }
  return {
    transport,
    extensionTimeout: positive("extensionTimeout", config.extensionTimeout, DEFAULT_EXTENSION_TIMEOUT_MS),
    url,
    timeout: positive("timeout", config.timeout, DEFAULT_TIMEOUT_MS),
    signTimeout: positive("signTimeout", config.signTimeout, DEFAULT_SIGN_TIMEOUT_MS),
    connectTimeout: positive("connectTimeout", config.connectTimeout, DEFAULT_CONNECT_TIMEOUT_MS),
    module: config.module,
    origin: config.origin,
    platform: config.platform ?? detectOs(),
    localNetworkTimeout: positive("localNetworkTimeout", config.localNetworkTimeout, DEFAULT_LOCAL_NETWORK_TIMEOUT_MS),
    minAgentVersion: config.minAgentVersion,
  };
}

export class KeyportClient {
  readonly config: Readonly<ResolvedConfig>;
  private readonly connection: Connection;

  private constructor(config: ResolvedConfig, extra: Pick<KeyportConfig, "WebSocket" | "onStatus">) {
    this.config = Object.freeze(config);
    const options: ConstructorParameters<typeof Connection>[0] = {
      url: config.url,
      transport: config.transport,
      extensionTimeout: config.extensionTimeout,
      connectTimeout: config.connectTimeout,
      localNetworkTimeout: config.localNetworkTimeout,
    };
    const { WebSocket, onStatus } = extra;
    if (onStatus) options.onStatus = onStatus;
    if (WebSocket) options.WebSocket = WebSocket;
    if (config.origin !== undefined) options.origin = config.origin;
    this.connection = new Connection(options);
  }

  /**
   * Connect to the agent. Resolves with a client whose connection is open; rejects with a
   * RestException: AGENT_UNAVAILABLE when the agent is not running or refuses this origin (the
   * page can ask the person to start or install it), LOCAL_NETWORK_BLOCKED when the browser does
   * not let the page reach this computer (the page can tell the person how to allow it),
   * EXTENSION_UNAVAILABLE (`transport: "extension"` and no Keyport extension in this page),
   * NATIVE_HOST_UNAVAILABLE (the extension is there but the agent's browser connector is not), and
   * AGENT_OUTDATED when `minAgentVersion` is newer than the agent. Later calls reconnect, through
   * the door the first connection used.
   */
  static initialize(config: KeyportConfig = {}, callback?: Callback<KeyportClient>): Promise<KeyportClient> {
    let promise: Promise<KeyportClient>;
    try {
      const client = new KeyportClient(resolve(config), config);
      promise = client.connection.connect().then(async () => {
        const need = client.config.minAgentVersion;
        if (need !== undefined) await client.requireVersion(need);
        return client;
      });
    } catch (error) {
      promise = Promise.reject(error as RestException);
    }
    return withCallback(promise, callback);
  }

  /**
   * The agent's version, the protocol's, the methods it serves and its features, and `door`: how
   * this client reaches it (`"extension"` or `"websocket"`).
   */
  agentInfo(callback?: Callback<AgentInfoResponse>): Promise<AgentInfoResponse> {
    const promise = this.connection.call(METHODS.version, {}, this.config.timeout).then(
      (result): AgentInfoResponse => ({
        data: { ...(result as VersionResult), door: this.connection.door ?? "websocket" },
        success: true,
      }),
    );
    return withCallback(promise, callback);
  }

  private async requireVersion(need: string): Promise<void> {
    let have: string;
    try {
      have = (await this.agentInfo()).data.agent;
    } catch (error) {
      // Agents before keyport.version (0.1) do not know the method.
      if ((error as RestException).reason === "METHOD_NOT_FOUND") have = "0.1.0";
      else throw error;
    }
    if (!versionAtLeast(have, need)) {
      throw agentOutdated(`This site needs version ${need} or newer; version ${have} is running.`);
    }
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

  /** The door of the open connection (or of the last one): `"extension"` or `"websocket"`. */
  get door(): Door | undefined {
    return this.connection.door;
  }

  /** Close the connection (requests in flight fail with AGENT_UNAVAILABLE). A later call reconnects. */
  close(): void {
    this.connection.close();
  }
}
