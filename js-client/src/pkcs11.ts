// The PKCS #11 methods of the agent, as promises and node-style callbacks.

import type { RestException } from "./errors.js";
import {
  METHODS,
  type AlgorithmReference,
  type CertificateEntry,
  type CertificatesParams,
  type InfoResult,
  type SlotInfo,
  type TokenInfo,
} from "./protocol.js";
import type { Connection } from "./transport.js";

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

/**
 * A node-style callback: `(null, response)` on success, `(error, null)` on failure.
 * (Declared bivariantly so that callbacks typed `(error: RestException, data: T) => void` fit.)
 */
export type Callback<T> = {
  bivarianceHack(error: RestException | null, data: T | null): void;
}["bivarianceHack"];

export interface CertificatesOptions {
  /** Ask the agent to parse each certificate (`parsed`: subject, issuer, validity, key...). */
  parseCerts?: boolean;
}

/** What `signData` takes: `data` is the base64 of a digest made with `algorithm_reference`. */
export interface SignDataRequest {
  slot_id: number;
  /** The `id` of a certificate from `certificates()`. */
  cert_id: string;
  pin: string;
  /** Base64 of the digest (20, 32, 48 or 64 bytes for sha1, sha256, sha384, sha512). */
  data: string;
  algorithm_reference: AlgorithmReference;
}

/** What `verifySignedData` takes: the signData fields plus the base64 `signature`. */
export interface VerifySignedDataRequest extends Omit<SignDataRequest, "pin"> {
  /** Accepted for symmetry with signData; the agent ignores it. */
  pin?: string;
  signature: string;
}

export interface AbstractPkcs11 {
  certificates(
    slotId: number,
    options?: CertificatesOptions,
    callback?: Callback<CertificatesResponse>,
  ): Promise<CertificatesResponse>;
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

  constructor(private readonly options: Pkcs11Options) {
    this.module = options.module;
  }

  info(callback?: Callback<InfoResponse>): Promise<InfoResponse> {
    return this.run<InfoResult>(METHODS.info, {}, callback);
  }

  slots(callback?: Callback<SlotsResponse>): Promise<SlotsResponse> {
    return this.run<SlotInfo[]>(METHODS.slots, {}, callback);
  }

  slotsWithTokenPresent(callback?: Callback<SlotsResponse>): Promise<SlotsResponse> {
    return this.run<SlotInfo[]>(METHODS.slotsWithTokenPresent, {}, callback);
  }

  token(slotId: number, callback?: Callback<TokenResponse>): Promise<TokenResponse> {
    return this.run<TokenInfo>(METHODS.token, { slot_id: slotId }, callback);
  }

  certificates(
    slotId: number,
    options?: CertificatesOptions | Callback<CertificatesResponse>,
    callback?: Callback<CertificatesResponse>,
  ): Promise<CertificatesResponse> {
    if (typeof options === "function") {
      callback = options;
      options = undefined;
    }
    const params: CertificatesParams = { slot_id: slotId };
    if (options && options.parseCerts !== undefined) params.parse_certs = options.parseCerts;
    return this.run<CertificateEntry[]>(METHODS.certificates, params, callback);
  }

  signData(data: SignDataRequest, callback?: Callback<DataResponse>): Promise<DataResponse> {
    return this.run<string>(METHODS.signData, data, callback, this.options.signTimeout);
  }

  verifySignedData(data: VerifySignedDataRequest, callback?: Callback<BoolDataResponse>): Promise<BoolDataResponse> {
    return this.run<boolean>(METHODS.verifySignedData, data, callback);
  }

  private run<T>(
    method: string,
    params: object,
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
