// keyport-client: talk to the Keyport agent (PKCS #11 tokens over a local WebSocket, or through
// the Keyport browser extension).

export {
  KeyportClient,
  DEFAULT_URL,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_SIGN_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_LOCAL_NETWORK_TIMEOUT_MS,
  versionAtLeast,
  type AgentInfoResponse,
  type KeyportConfig,
  type ResolvedConfig,
} from "./client.js";
export { RestException, reasonOfCode, type ErrorSource } from "./errors.js";
export {
  Pkcs11,
  type AbstractPkcs11,
  type Callback,
  type CertificatesOptions,
  type DataResult,
  type InfoResponse,
  type SlotsResponse,
  type TokenResponse,
  type CertificatesResponse,
  type DataResponse,
  type BoolDataResponse,
  type DataListResponse,
  type SignDataBatchRequest,
  type SignDataRequest,
  type VerifySignedDataRequest,
  type RequestOf,
} from "./pkcs11.js";
export { detectOs, type ModuleConfig, type OsName } from "./platform.js";
export {
  SLOT_EVENT,
  RESUBSCRIBE_MAX_DELAY_MS,
  type TokenEvent,
  type TokenEventListener,
  type TokenEventOptions,
} from "./events.js";
export { loopbackPermission } from "./transport.js";
export type { WebSocketLike, WebSocketConstructor, ConnectionStatus, LoopbackPermission, Transport } from "./transport.js";
export { DEFAULT_EXTENSION_TIMEOUT_MS } from "./extension.js";
export * from "./protocol.js";
