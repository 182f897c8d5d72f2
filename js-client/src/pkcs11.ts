// The PKCS #11 methods of the agent, as promises and node-style callbacks.

import type { RestException } from "./errors.js";
import {
  METHODS,
  type CertificateFilter,
  type SignDataBatchParams,
  type CertificateEntry,
  type InfoResult,
  type MethodTable,
  type SignDataParams,
  type SlotInfo,
  type TokenInfo,
  type VerifySignedDataParams,
} from "./protocol.js";
import type { Connection } from "./transport.js";
import { TokenEventFeed, type TokenEventListener, type TokenEventOptions } from "./events.js";

/** A successful answer: `data` is the agent's result. */
export interface DataResult<T> {
  data: T;
  success: true;
}

export type InfoResponse = DataResult<InfoResult>;
export type SlotsResponse = DataResult<SlotInfo[]>;
export type TokenResponse = DataResult<TokenInfo>;
export type CertificatesResponse = DataResult<CertificateEntry[]>;
/** `data` is the base64 signature. */
export type DataResponse = DataResult<string>;
/** `data` says whether the signature is valid. */
export type BoolDataResponse = DataResult<boolean>;
/** `data` is the base64 signatures, in the order of the digests. */
export type DataListResponse = DataResult<string[]>;

/**
 * A node-style callback: `(error, null)` on failure, `(null, response)` on success.
 *
 * The arguments are a union of tuples told apart by `error`: when `error` is null the response is
 * a `T`, so with inferred parameters `strict` TypeScript narrows it after the check:
 *
 * ```ts
 * pkcs11.slots((error, response) => {
 *   if (error) return console.error(error.reason); // error: RestException
 *   console.log(response.data);                    // response: SlotsResponse, not null
 * });
 * ```
 *
 * Callbacks with their own parameter types fit too: `(error: RestException | null, data: T | null)`,
 * and (the type is declared bivariantly, as a method) `(error: RestException, data: T)`. The last
 * tuple is there for that one only: the client never calls back with both an error and a response.
 */
export type Callback<T> = {
  bivarianceHack(
    ...args: [error: RestException, data: null] | [error: null, data: T] | [error: RestException, data: T]
  ): void;
}["bivarianceHack"];

export interface CertificatesOptions {
  /** Ask the agent to parse each certificate (`parsed`: subject, issuer, validity, key...). */
  parseCerts?: boolean;
  /**
   * Only the certificates that pass every condition given: a key usage bit (e.g.
   * `"nonRepudiation"`), valid at a time (RFC 3339), with or without a private key on the token.
   */
  filter?: CertificateFilter;
}

/**
 * What a method takes from the page: its params (generated from the protocol crate) without
 * `module`, which the client sends from its configuration.
 */
export type RequestOf<M extends keyof MethodTable> = Omit<MethodTable[M]["params"], "module">;

/** What `signData` takes: `data` is the base64 of a digest made with `algorithm_reference`. */
export type SignDataRequest = Omit<SignDataParams, "module">;

/** What `signDataBatch` takes: signData's fields, with `data` a list of 1 to 256 base64 digests. */
export type SignDataBatchRequest = Omit<SignDataBatchParams, "module">;

/** What `verifySignedData` takes: the signData fields plus the base64 `signature`. */
export type VerifySignedDataRequest = Omit<VerifySignedDataParams, "module">;

export interface AbstractPkcs11 {
  certificates(
    slotId: number,
    options?: CertificatesOptions,
    callback?: Callback<CertificatesResponse>,
  ): Promise<CertificatesResponse>;
  /** The same, without options: `certificates(slotId, callback)`. */
  certificates(slotId: number, callback: Callback<CertificatesResponse>): Promise<CertificatesResponse>;
  info(callback?: Callback<InfoResponse>): Promise<InfoResponse>;
  signData(data: SignDataRequest, callback?: Callback<DataResponse>): Promise<DataResponse>;
  slots(callback?: Callback<SlotsResponse>): Promise<SlotsResponse>;
  slotsWithTokenPresent(callback?: Callback<SlotsResponse>): Promise<SlotsResponse>;
  token(slotId: number, callback?: Callback<TokenResponse>): Promise<TokenResponse>;
  verifySignedData(data: VerifySignedDataRequest, callback?: Callback<BoolDataResponse>): Promise<BoolDataResponse>;
}

export interface Pkcs11Options {
  connection: Connection;
  /** The library path to send as `module`, or undefined for the agent's default. */
  module: string | undefined;
  timeout: number;
  signTimeout: number;
}

/**
 * Settle `callback` (if any) from `promise`, and return `promise`. When a callback is given the
 * promise is marked handled, so that callers who only use the callback do not get unhandled
 * rejections; awaiting it still throws. The callback runs in its own task: an exception it throws
 * is reported as uncaught, and does not reject the promise.
 */
export function withCallback<T>(promise: Promise<T>, callback: Callback<T> | undefined): Promise<T> {
  if (typeof callback === "function") {
    promise.then(
      (value) => queueMicrotask(() => callback(null, value)),
      (error: RestException) => queueMicrotask(() => callback(error, null)),
    );
  }
  return promise;
}

export class Pkcs11 implements AbstractPkcs11 {
  /** The module path sent with every request (`undefined`: the agent's default). */
  readonly module: string | undefined;
  private readonly feed: TokenEventFeed;

  constructor(private readonly options: Pkcs11Options) {
    this.module = options.module;
    this.feed = new TokenEventFeed(
      options.connection,
      () => (this.module !== undefined ? { module: this.module } : {}),
      options.timeout,
    );
  }

  /**
   * Be told when a token is inserted into or removed from a slot of this library, instead of
   * polling `slotsWithTokenPresent`. Returns a function that stops listening.
   *
   * The first listener subscribes (`pkcs11.subscribeSlotEvents`), the last one to stop
   * unsubscribes. If the connection closes (the agent stopped or restarted), the client
   * subscribes again by itself, waiting 0.5 s, then 1 s, 2 s… up to 10 s between tries, and tells
   * `onError` each time it cannot. Events that happened while no connection was open are not
   * replayed: list the tokens again after `onStatus("connected")`.
   *
   * ```ts
   * const stop = pkcs11.onTokenEvent((e) => {
   *   if (e.event === "inserted") console.log(`${e.token_label} is in slot ${e.slot_id}`);
   *   else console.log(`the token left slot ${e.slot_id}`);
   * });
   * // later: stop();
   * ```
   */
  onTokenEvent(listener: TokenEventListener, options?: TokenEventOptions): () => void {
    return this.feed.add(listener, options);
  }

  info(callback?: Callback<InfoResponse>): Promise<InfoResponse> {
    return this.run(METHODS.info, {}, callback);
  }

  slots(callback?: Callback<SlotsResponse>): Promise<SlotsResponse> {
    return this.run(METHODS.slots, {}, callback);
  }

  slotsWithTokenPresent(callback?: Callback<SlotsResponse>): Promise<SlotsResponse> {
    return this.run(METHODS.slotsWithTokenPresent, {}, callback);
  }

  token(slotId: number, callback?: Callback<TokenResponse>): Promise<TokenResponse> {
    return this.run(METHODS.token, { slot_id: slotId }, callback);
  }

  certificates(
    slotId: number,
    options?: CertificatesOptions,
    callback?: Callback<CertificatesResponse>,
  ): Promise<CertificatesResponse>;
  certificates(slotId: number, callback: Callback<CertificatesResponse>): Promise<CertificatesResponse>;
  certificates(
    slotId: number,
    options?: CertificatesOptions | Callback<CertificatesResponse>,
    callback?: Callback<CertificatesResponse>,
  ): Promise<CertificatesResponse> {
    if (typeof options === "function") {
      callback = options;
      options = undefined;
    }
    const params: RequestOf<typeof METHODS.certificates> = { slot_id: slotId };
    if (options && options.parseCerts !== undefined) params.parse_certs = options.parseCerts;
    if (options && options.filter !== undefined) params.filter = options.filter;
    return this.run(METHODS.certificates, params, callback);
  }

  signData(data: SignDataRequest, callback?: Callback<DataResponse>): Promise<DataResponse> {
    return this.run(METHODS.signData, data, callback, this.options.signTimeout);
  }

  verifySignedData(data: VerifySignedDataRequest, callback?: Callback<BoolDataResponse>): Promise<BoolDataResponse> {
    return this.run(METHODS.verifySignedData, data, callback);
  }

  /**
   * Sign 1 to 256 digests with one certificate's key after one consent prompt (which says how
   * many) and one login; the signatures in the same order. One bad digest fails the request
   * before anything is signed (INVALID_PARAMS naming `data[i]`). Not part of `AbstractPkcs11`.
   */
  signDataBatch(data: SignDataBatchRequest, callback?: Callback<DataListResponse>): Promise<DataListResponse> {
    return this.run(METHODS.signDataBatch, data, callback, this.options.signTimeout);
  }

  private run<M extends keyof MethodTable, T extends MethodTable[M]["result"] = MethodTable[M]["result"]>(
    method: M,
    params: RequestOf<M>,
    callback: Callback<DataResult<T>> | undefined,
    timeout: number = this.options.timeout,
  ): Promise<DataResult<T>> {
    // The caller's fields are sent as given (the agent names any unknown or missing field).
    const body: Record<string, unknown> = { ...params };
    if (this.module !== undefined) body.module = this.module;
    const promise = this.options.connection
      .call(method, body, timeout)
      .then((result): DataResult<T> => ({ data: result as T, success: true }));
    return withCallback(promise, callback);
  }
}
