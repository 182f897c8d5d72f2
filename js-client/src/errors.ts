// Errors as pages see them: a RestException for every failure, from the agent or from the client.

import { ERROR_CODES, ERROR_MESSAGES, PIN_STATES, type ErrorReason, type PinState } from "./protocol.js";

/** Who produced an error: the agent (a JSON-RPC error object) or this client (no answer at all). */
export type ErrorSource = "agent" | "client";

export interface RestExceptionInit {
  code: number;
  description: string;
  reason: ErrorReason;
  source: ErrorSource;
  pin_state?: PinState;
  cause?: unknown;
}

/**
 * Every failure: `{ success: false, description, code, reason, pin_state?, source }`.
 *
 * - `code`: the JSON-RPC error code (see `ERROR_CODES`).
 * - `reason`: the stable symbolic name (`error.data.reason`, or derived from `code` for errors of
 *   the JSON-RPC layer, which carry no data).
 * - `description`: a sentence a person can act on (the agent's message).
 * - `pin_state`: on PIN errors, when the token reports it.
 * - `source`: `"client"` when this client (or the browser extension it talks through) produced the
 *   error (AGENT_UNAVAILABLE, EXTENSION_UNAVAILABLE, NATIVE_HOST_UNAVAILABLE, a client-side
 *   REQUEST_TIMEOUT, invalid config), `"agent"` when the agent answered with it.
 */
export class RestException extends Error {
  readonly success = false as const;
  readonly code: number;
  readonly description: string;
  readonly reason: ErrorReason;
  readonly pin_state?: PinState;
  readonly source: ErrorSource;

  constructor(init: RestExceptionInit) {
    super(init.description, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "RestException";
    this.code = init.code;
    this.description = init.description;
    this.reason = init.reason;
    this.source = init.source;
    if (init.pin_state !== undefined) this.pin_state = init.pin_state;
  }

  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {
      success: false,
      description: this.description,
      code: this.code,
      reason: this.reason,
      source: this.source,
    };
    if (this.pin_state !== undefined) out.pin_state = this.pin_state;
    return out;
  }
}

const REASON_OF_CODE = new Map<number, ErrorReason>(
  (Object.keys(ERROR_CODES) as ErrorReason[]).map((reason) => [ERROR_CODES[reason], reason]),
);


/** The reason of a JSON-RPC error code (`undefined` for a code the protocol does not define). */
export function reasonOfCode(code: number): ErrorReason | undefined {
  return REASON_OF_CODE.get(code);
}

/** A RestException from a JSON-RPC error object the agent sent. */
export function fromRpcError(error: unknown): RestException {
  const e = (typeof error === "object" && error !== null ? error : {}) as Record<string, unknown>;
  if (typeof e.code !== "number") {
    return new RestException({
      code: ERROR_CODES.INTERNAL,
      reason: "INTERNAL",
      description: "The Keyport agent sent an invalid error object.",
      source: "agent",
    });
  }
  const data = (typeof e.data === "object" && e.data !== null ? e.data : {}) as Record<string, unknown>;
  const message = typeof e.message === "string" ? e.message : "";
  let reason: ErrorReason;
  let description: string;
  if (typeof data.reason === "string") {
    // The agent's own errors: its message is written for people. A reason this client does not
    // know (a newer agent) is passed on as it is.
    reason = data.reason as ErrorReason;
    description = message || (ERROR_MESSAGES[reason] ?? ERROR_MESSAGES.INTERNAL);
  } else {
    // Errors of the JSON-RPC layer carry no reason: their code says which they are. Their message
    // comes from the JSON-RPC library, so the protocol's sentence goes first.
    reason = reasonOfCode(e.code) ?? "INTERNAL";
    const known = reasonOfCode(e.code) !== undefined;
    const base = known ? ERROR_MESSAGES[reason] : message || ERROR_MESSAGES.INTERNAL;
    const extra = [message, typeof e.data === "string" ? e.data : ""].filter((x) => x && x !== base);
    description = extra.length > 0 ? `${base} (${extra.join(": ")})` : base;
  }
  const init: RestExceptionInit = { code: e.code, reason, description, source: "agent" };
  if (typeof data.pin_state === "string" && (PIN_STATES as readonly string[]).includes(data.pin_state)) {
    init.pin_state = data.pin_state as PinState;
  }
  return new RestException(init);
}

/** The agent is not running, refused the handshake, or the connection broke. */
export function agentUnavailable(detail: string, cause?: unknown): RestException {
  return new RestException({
    code: ERROR_CODES.AGENT_UNAVAILABLE,
    reason: "AGENT_UNAVAILABLE",
    description: `${ERROR_MESSAGES.AGENT_UNAVAILABLE} ${detail}`,
    source: "client",
    cause,
  });
}

/**
 * The browser does not let this page reach the agent on this computer (Local Network Access:
 * Chrome's `loopback-network` permission is denied, or was not granted when the socket failed).
 */
export function localNetworkBlocked(detail: string, cause?: unknown): RestException {
  return new RestException({
    code: ERROR_CODES.LOCAL_NETWORK_BLOCKED,
    reason: "LOCAL_NETWORK_BLOCKED",
    description:
      `${ERROR_MESSAGES.LOCAL_NETWORK_BLOCKED} ${detail} Allow this site to access apps and ` +
      "services on this device in the browser's site settings (the icon left of the address), " +
      "then reload the page.",
    source: "client",
    cause,
  });
}

/** Sentences joined by one space, the empty ones left out. */
function sentences(...parts: string[]): string {
  return parts.filter((p) => p !== "").join(" ");
}

/** The page asked for the extension door and no Keyport extension answered in this tab. */
export function extensionUnavailable(detail: string): RestException {
  return new RestException({
    code: ERROR_CODES.EXTENSION_UNAVAILABLE,
    reason: "EXTENSION_UNAVAILABLE",
    description: sentences(
      ERROR_MESSAGES.EXTENSION_UNAVAILABLE,
      detail,
      "Install or enable the Keyport extension, then reload the page.",
    ),
    source: "client",
  });
}

/** The extension is there, but the browser cannot start the agent's native-messaging host. */
export function nativeHostUnavailable(detail: string, cause?: unknown): RestException {
  return new RestException({
    code: ERROR_CODES.NATIVE_HOST_UNAVAILABLE,
    reason: "NATIVE_HOST_UNAVAILABLE",
    description: sentences(
      ERROR_MESSAGES.NATIVE_HOST_UNAVAILABLE,
      detail,
      "Install or reinstall the Keyport agent (`keyport doctor` says what is missing), then reload the page.",
    ),
    source: "client",
    cause,
  });
}

/**
 * An error the extension (or its native-messaging host) reported while connecting:
 * `{ reason, message }`. Known reasons keep their code; anything else is AGENT_UNAVAILABLE.
 */
export function extensionError(reason: unknown, message: unknown): RestException {
  const detail = typeof message === "string" && message ? message : "";
  if (reason === "NATIVE_HOST_UNAVAILABLE") {
    return nativeHostUnavailable(detail ? `(${detail})` : "", { reason, message });
  }
  if (reason === "EXTENSION_UNAVAILABLE") return extensionUnavailable(detail);
  if (typeof reason === "string" && reason !== "AGENT_UNAVAILABLE" && reason in ERROR_CODES) {
    const known = reason as ErrorReason;
    return new RestException({
      code: ERROR_CODES[known],
      reason: known,
      description: detail ? `${ERROR_MESSAGES[known]} (${detail})` : ERROR_MESSAGES[known],
      source: "client",
    });
  }
  return agentUnavailable(detail ? `(through the Keyport extension: ${detail})` : "(through the Keyport extension)");
}

/** The agent is older than the page needs. */
export function agentOutdated(detail: string): RestException {
  return new RestException({
    code: ERROR_CODES.AGENT_OUTDATED,
    reason: "AGENT_OUTDATED",
    description: `${ERROR_MESSAGES.AGENT_OUTDATED} ${detail}`,
    source: "client",
  });
}

/** No answer within the client's time limit (the agent may still be working on the request). */
export function clientTimeout(method: string, ms: number): RestException {
  return new RestException({
    code: ERROR_CODES.REQUEST_TIMEOUT,
    reason: "REQUEST_TIMEOUT",
    description:
      `The Keyport agent did not answer ${method} within ${ms} ms; the client stopped waiting. ` +
      "The agent may still finish the request.",
    source: "client",
  });
}

/** The client was given an invalid configuration or argument. */
export function invalidConfig(detail: string): RestException {
  return new RestException({
    code: ERROR_CODES.INVALID_PARAMS,
    reason: "INVALID_PARAMS",
    description: `Invalid keyport-client configuration: ${detail}`,
    source: "client",
  });
}
