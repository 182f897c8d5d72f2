// Generated from the Rust crate keyport-protocol. Do not edit by hand:
// run `KEYPORT_BLESS=1 cargo test -p keyport-protocol` after changing protocol/.
/* eslint-disable */

export const DEFAULT_PORT = 10443;
/** The native-messaging host's name (the extension's `connectNative`). */
export const NATIVE_HOST_NAME = "org.keyport.agent";

/** JSON-RPC method names. */
export const METHODS = {
  info: "pkcs11.info",
  slots: "pkcs11.slots",
  slotsWithTokenPresent: "pkcs11.slotsWithTokenPresent",
  token: "pkcs11.token",
  certificates: "pkcs11.certificates",
  signData: "pkcs11.signData",
  verifySignedData: "pkcs11.verifySignedData",
  version: "keyport.version",
  discover: "rpc.discover",
  signDataBatch: "pkcs11.signDataBatch",
  subscribeSlotEvents: "pkcs11.subscribeSlotEvents",
  unsubscribeSlotEvents: "pkcs11.unsubscribeSlotEvents",
} as const;

/** Every method: the params it takes and the result it answers with. */
export interface MethodTable {
  "pkcs11.info": { params: ModuleParams; result: InfoResult };
  "pkcs11.slots": { params: ModuleParams; result: Array<SlotInfo> };
  "pkcs11.slotsWithTokenPresent": { params: ModuleParams; result: Array<SlotInfo> };
  "pkcs11.token": { params: TokenParams; result: TokenInfo };
  "pkcs11.certificates": { params: CertificatesParams; result: Array<CertificateEntry> };
  "pkcs11.signData": { params: SignDataParams; result: string };
  "pkcs11.verifySignedData": { params: VerifySignedDataParams; result: boolean };
  "keyport.version": { params: NoParams; result: VersionResult };
  "rpc.discover": { params: NoParams; result: JsonValue };
  "pkcs11.signDataBatch": { params: SignDataBatchParams; result: Array<string> };
  "pkcs11.subscribeSlotEvents": { params: ModuleParams; result: number };
  "pkcs11.unsubscribeSlotEvents": { params: UnsubscribeParams; result: boolean };
}

/**
 * Params of a method that takes none (`keyport.version`, `rpc.discover`): `{}` or absent.
 */
export type NoParams = Record<symbol, never>;

/**
 * Params of `pkcs11.info`, `pkcs11.slots` and `pkcs11.slotsWithTokenPresent`.
 */
export type ModuleParams = { 
/**
 * Path of the PKCS #11 library; absent means the agent's default module.
 */
module?: string, };

/**
 * Params of `pkcs11.token`.
 */
export type TokenParams = { slot_id: number, module?: string, };

/**
 * Params of `pkcs11.certificates`.
 */
export type CertificatesParams = { slot_id: number, 
/**
 * When true each entry also carries `parsed`.
 */
parse_certs?: boolean, 
/**
 * Only the certificates that pass every condition given.
 */
filter?: CertificateFilter, module?: string, };

/**
 * The digest algorithm of the data a page asks to sign.
 */
export type AlgorithmReference = "sha1" | "sha256" | "sha384" | "sha512";

/**
 * Conditions on the certificates `pkcs11.certificates` lists; each one given must hold.
 */
export type CertificateFilter = { 
/**
 * The certificate's key usage extension has this bit. A certificate without the
 * extension does not pass (it names no usage).
 */
key_usage?: KeyUsage, 
/**
 * The certificate is valid at this time (RFC 3339, e.g. `2026-11-27T12:00:00Z`).
 */
valid_at?: string, 
/**
 * The token has (true) or lacks (false) a private key with the certificate's CKA_ID, as far
 * as it shows its private keys (see PROTOCOL.md).
 */
has_private_key?: boolean, };

/**
 * A bit of the X.509 key usage extension (RFC 5280, 4.2.1.3).
 */
export type KeyUsage = "digitalSignature" | "nonRepudiation" | "keyEncipherment" | "dataEncipherment" | "keyAgreement" | "keyCertSign" | "cRLSign" | "encipherOnly" | "decipherOnly";

/**
 * How an RSA key signs.
 */
export type SignatureScheme = "pkcs1" | "pss";

/**
 * How an ECDSA signature is encoded.
 */
export type SignatureFormat = "raw" | "der";

/**
 * Params of `pkcs11.signData`.
 */
export type SignDataParams = { slot_id: number, 
/**
 * Upper-case hex of the certificate's CKA_ID (as `pkcs11.certificates` returns it).
 */
cert_id: string, 
/**
 * The user PIN. Never logged, never echoed, zeroized after the call. Absent: the PIN never
 * passes through the page: a token with a PIN pad (`protected_authentication_path`) takes
 * it on the reader's keypad, any other token gets it from the agent's own PIN prompt.
 */
pin?: string, 
/**
 * Base64 of the digest to sign.
 */
data: string, algorithm_reference: AlgorithmReference, 
/**
 * RSA keys: `pkcs1` (PKCS #1 v1.5, the default) or `pss` (RSASSA-PSS, MGF1 with the same
 * hash, salt as long as the hash). EC keys: absent or `pkcs1` only.
 */
signature_scheme?: SignatureScheme, 
/**
 * EC keys: `raw` (r||s, the default) or `der` (an ASN.1 `ECDSA-Sig-Value`, what OpenSSL,
 * CMS and XAdES/PAdES tools expect). RSA signatures are the same either way.
 */
signature_format?: SignatureFormat, module?: string, };

/**
 * Params of `pkcs11.signDataBatch`: `pkcs11.signData`'s, with `data` a list.
 */
export type SignDataBatchParams = { slot_id: number, cert_id: string, pin?: string, 
/**
 * 1 to 256 base64 digests, all made with `algorithm_reference`.
 */
data: Array<string>, algorithm_reference: AlgorithmReference, signature_scheme?: SignatureScheme, signature_format?: SignatureFormat, module?: string, };

/**
 * Params of `pkcs11.verifySignedData`: the signData fields plus the signature.
 *
 * Verification uses the certificate's public key; the PIN is not needed and may be omitted.
 */
export type VerifySignedDataParams = { slot_id: number, cert_id: string, pin?: string, 
/**
 * Base64 of the digest that was signed.
 */
data: string, algorithm_reference: AlgorithmReference, 
/**
 * Base64 of the signature (PKCS #1 v1.5 or PSS for RSA, as `signature_scheme` says; for
 * ECDSA raw r||s or DER, as `signature_format` says).
 */
signature: string, signature_scheme?: SignatureScheme, signature_format?: SignatureFormat, module?: string, };

/**
 * Result of `pkcs11.info`.
 */
export type InfoResult = { 
/**
 * "major.minor" of the Cryptoki version the library implements.
 */
cryptoki_version: string, manufacturer_id: string, 
/**
 * CK_INFO flags (reserved, 0 in PKCS #11 v2.40).
 */
flags: number, library_description: string, 
/**
 * "major.minor".
 */
library_version: string, };

/**
 * One entry of `pkcs11.slots` / `pkcs11.slotsWithTokenPresent`.
 */
export type SlotInfo = { slot_id: number, description: string, 
/**
 * CK_SLOT_INFO flags: CKF_TOKEN_PRESENT 0x1, CKF_REMOVABLE_DEVICE 0x2, CKF_HW_SLOT 0x4.
 */
flags: number, hardware_version: string, firmware_version: string, };

/**
 * What the token says about its user PIN.
 */
export type PinState = "ok" | "count_low" | "final_try" | "locked";

/**
 * Result of `pkcs11.token`.
 */
export type TokenInfo = { slot_id: number, label: string, manufacturer_id: string, model: string, serial_number: string, 
/**
 * CK_TOKEN_INFO flags as the PKCS #11 bit mask (e.g. CKF_USER_PIN_COUNT_LOW 0x10000).
 */
flags: number, 
/**
 * CKF_TOKEN_INITIALIZED: the token has been initialised (C_InitToken). `false`: a blank
 * token (e.g. SoftHSM's free slot) that holds nothing yet: `certificates` lists none, and
 * nothing can sign with it until its owner initialises it with the vendor's tool.
 */
token_initialized: boolean, 
/**
 * The user PIN state decoded from `flags`.
 */
pin_state: PinState, 
/**
 * CKF_PROTECTED_AUTHENTICATION_PATH: the PIN is typed on the reader's own keypad (a PIN-pad
 * reader), never in the page or on the computer. Send `signData` without `pin`.
 */
protected_authentication_path: boolean, 
/**
 * `null` where the token reports CK_UNAVAILABLE_INFORMATION or CK_EFFECTIVELY_INFINITE.
 */
max_session_count: number | null, session_count: number | null, max_rw_session_count: number | null, rw_session_count: number | null, max_pin_length: number, min_pin_length: number, total_public_memory: number | null, free_public_memory: number | null, total_private_memory: number | null, free_private_memory: number | null, hardware_version: string, firmware_version: string, };

/**
 * Parsed fields of an X.509 certificate (`parse_certs: true`).
 */
export type ParsedCertificate = { 
/**
 * The Distinguished Name on one line, in certificate order, e.g. "C=BE, O=Example, CN=Alice".
 */
subject: string, issuer: string, 
/**
 * The CN of the subject, when there is one.
 */
common_name: string | null, 
/**
 * Upper-case hex of the serial number.
 */
serial_number: string, 
/**
 * RFC 3339, UTC.
 */
not_before: string, not_after: string, 
/**
 * "RSA" or "EC".
 */
public_key_algorithm: string, 
/**
 * Bits of the RSA modulus or of the EC field.
 */
public_key_size: number, 
/**
 * Named curve of an EC key ("P-256", "P-384", "P-521"), else null.
 */
curve: string | null, 
/**
 * Key usage bits by name, e.g. ["digitalSignature", "nonRepudiation"]; empty when absent.
 */
key_usage: Array<string>, 
/**
 * Upper-case hex of the SHA-256 of the DER.
 */
sha256_fingerprint: string, };

/**
 * One entry of `pkcs11.certificates`.
 */
export type CertificateEntry = { 
/**
 * Standard base64 of the exact DER on the token.
 */
base64: string, 
/**
 * Upper-case hex of CKA_ID: pass it as `cert_id`.
 */
id: string, 
/**
 * Present when `parse_certs` was true.
 */
parsed?: ParsedCertificate, };

/**
 * Result of `keyport.version`.
 */
export type VersionResult = { 
/**
 * The agent's version (semver), e.g. "0.2.0".
 */
agent: string, 
/**
 * The wire contract's version (semver, [`PROTOCOL_VERSION`]).
 */
protocol: string, 
/**
 * Every method this agent serves.
 */
methods: Array<string>, 
/**
 * Optional capabilities in force (see [`feature`]).
 */
features: Array<string>, };

/**
 * Params of `pkcs11.unsubscribeSlotEvents`.
 */
export type UnsubscribeParams = { 
/**
 * What `pkcs11.subscribeSlotEvents` answered.
 */
subscription: number, };

/**
 * What happened in a slot.
 */
export type SlotEventKind = "inserted" | "removed";

/**
 * One token insertion or removal.
 */
export type SlotEvent = { 
/**
 * The PKCS #11 library, as the subscription named it (or the agent's default).
 */
module: string, slot_id: number, event: SlotEventKind, 
/**
 * The token's label: of the token inserted, or of the one removed (when known).
 */
token_label?: string, };

/**
 * The params of a `pkcs11.slotEvent` notification.
 */
export type SlotEventNotification = { subscription: number, result: SlotEvent, };

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

/**
 * Which door a page came through to the agent: the agent's WebSocket directly, or the browser
 * extension and its native-messaging host (which relays to the same WebSocket). The client's
 * `agentInfo()` reports the one it uses as `door`.
 */
export type Door = "websocket" | "extension";

/**
 * Stable symbolic name of an error, sent as `error.data.reason`.
 */
export type ErrorReason = "PARSE_ERROR" | "INVALID_REQUEST" | "METHOD_NOT_FOUND" | "INVALID_PARAMS" | "MESSAGE_TOO_LARGE" | "MODULE_NOT_ALLOWED" | "MODULE_LOAD_FAILED" | "MODULE_CRASHED" | "SLOT_NOT_FOUND" | "TOKEN_NOT_PRESENT" | "CERTIFICATE_NOT_FOUND" | "KEY_NOT_FOUND" | "PIN_INCORRECT" | "PIN_LOCKED" | "PIN_LEN_RANGE" | "PIN_ENTRY_CANCELLED" | "PIN_ENTRY_UNAVAILABLE" | "UNSUPPORTED_ALGORITHM" | "CONSENT_DENIED" | "CONSENT_UNAVAILABLE" | "CONSENT_TIMEOUT" | "SIGNING_PAUSED" | "CONSENT_BUSY" | "DEVICE_ERROR" | "REQUEST_TIMEOUT" | "BUSY" | "TOKEN_BUSY" | "INTERNAL" | "AGENT_UNAVAILABLE" | "LOCAL_NETWORK_BLOCKED" | "AGENT_OUTDATED" | "EXTENSION_UNAVAILABLE" | "NATIVE_HOST_UNAVAILABLE";

/**
 * The `data` member of every error object the agent sends.
 */
export type ErrorData = { 
/**
 * Stable symbolic name, see [`ErrorReason`].
 */
reason: ErrorReason, 
/**
 * The token's PIN state, on PIN errors where the token reports it.
 */
pin_state?: PinState, };

/** Every `pin_state`, from the best to the worst. */
export const PIN_STATES = ["ok", "count_low", "final_try", "locked"] as const satisfies readonly PinState[];

/** The JSON-RPC error code of each reason. */
export const ERROR_CODES: Record<ErrorReason, number> = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  MESSAGE_TOO_LARGE: -32007,
  MODULE_NOT_ALLOWED: 1001,
  MODULE_LOAD_FAILED: 1002,
  MODULE_CRASHED: 1003,
  SLOT_NOT_FOUND: 1101,
  TOKEN_NOT_PRESENT: 1102,
  CERTIFICATE_NOT_FOUND: 1201,
  KEY_NOT_FOUND: 1202,
  PIN_INCORRECT: 1301,
  PIN_LOCKED: 1302,
  PIN_LEN_RANGE: 1303,
  PIN_ENTRY_CANCELLED: 1304,
  PIN_ENTRY_UNAVAILABLE: 1305,
  UNSUPPORTED_ALGORITHM: 1401,
  CONSENT_DENIED: 1501,
  CONSENT_UNAVAILABLE: 1502,
  CONSENT_TIMEOUT: 1503,
  SIGNING_PAUSED: 1504,
  CONSENT_BUSY: 1505,
  DEVICE_ERROR: 1601,
  REQUEST_TIMEOUT: 1602,
  BUSY: 1603,
  TOKEN_BUSY: 1604,
  INTERNAL: 1900,
  AGENT_UNAVAILABLE: 2001,
  LOCAL_NETWORK_BLOCKED: 2002,
  AGENT_OUTDATED: 2003,
  EXTENSION_UNAVAILABLE: 2004,
  NATIVE_HOST_UNAVAILABLE: 2005,
};

/** The agent's default message of each reason. */
export const ERROR_MESSAGES: Record<ErrorReason, string> = {
  PARSE_ERROR: "The request is not valid JSON.",
  INVALID_REQUEST: "The request is not a valid JSON-RPC 2.0 request.",
  METHOD_NOT_FOUND: "The agent has no such method.",
  INVALID_PARAMS: "The request's params are invalid.",
  MESSAGE_TOO_LARGE: "The request is larger than the agent accepts.",
  MODULE_NOT_ALLOWED: "This PKCS #11 library is not on the agent's allowlist.",
  MODULE_LOAD_FAILED: "The PKCS #11 library could not be loaded.",
  MODULE_CRASHED: "The PKCS #11 library crashed.",
  SLOT_NOT_FOUND: "No slot with this id.",
  TOKEN_NOT_PRESENT: "There is no token in this slot.",
  CERTIFICATE_NOT_FOUND: "No certificate with this id on the token.",
  KEY_NOT_FOUND: "The token has no private key for this certificate.",
  PIN_INCORRECT: "The PIN is incorrect.",
  PIN_LOCKED: "The PIN is locked.",
  PIN_LEN_RANGE: "The PIN has the wrong length for this token.",
  PIN_ENTRY_CANCELLED: "PIN entry was cancelled on the reader.",
  PIN_ENTRY_UNAVAILABLE: "The agent cannot ask for the PIN here.",
  UNSUPPORTED_ALGORITHM: "This algorithm or key type is not supported.",
  CONSENT_DENIED: "The person at the computer refused this signature.",
  CONSENT_UNAVAILABLE: "The agent cannot ask the person for consent.",
  CONSENT_TIMEOUT: "Nobody answered the consent prompt in time.",
  SIGNING_PAUSED: "Signing is paused in the Keyport agent.",
  CONSENT_BUSY: "Too many signatures are already waiting for the person's answer.",
  DEVICE_ERROR: "The token or its library reported an error.",
  REQUEST_TIMEOUT: "The request took too long and was abandoned.",
  BUSY: "Too many requests are in flight on this connection.",
  TOKEN_BUSY: "The token is busy with another request.",
  INTERNAL: "The agent hit an internal error.",
  AGENT_UNAVAILABLE: "The Keyport agent is not running or refused the connection.",
  LOCAL_NETWORK_BLOCKED: "The browser does not let this site connect to the Keyport agent on this computer.",
  AGENT_OUTDATED: "The Keyport agent is older than this site needs.",
  EXTENSION_UNAVAILABLE: "The Keyport browser extension is not installed or not enabled.",
  NATIVE_HOST_UNAVAILABLE: "The Keyport extension is installed but the Keyport agent's browser connector is missing.",
};
