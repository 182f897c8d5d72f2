//! The Keyport wire contract.
//!
//! This crate is the single source of truth for what travels between a web page (through the
//! `keyport-client` TypeScript package) and the `keyport` agent: JSON-RPC method names, the
//! by-name params of each method, the results, and the error table.
//!
//! * [`Method`] ties each method's name to its params and result types. The agent registers its
//!   handlers through it, the end-to-end tests call through it (`Client::call_typed::<SignData>`,
//!   deserialising the agent's answers with these types), and the generator walks it
//!   ([`for_each_method`]).
//! * The TypeScript types in `js-client/src/protocol.ts` are generated from them
//!   ([`generate::typescript`]), the client's request types included (`MethodTable`); a test
//!   fails when the committed file drifts.
//! * `docs/PROTOCOL.md` carries the error table; a test checks it against [`ErrorReason::ALL`].
//!
//! # Layout
//! * [`method`]: the method names; [`Method`] and one type per method ([`Info`], [`SignData`], …).
//! * params and results: the structs in this file.
//! * [`ErrorReason`]: every error the agent can return, with its stable code.
//! * [`generate`]: the TypeScript types and the Markdown error table.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

mod error;
pub mod generate;
pub mod openrpc;
mod pin;

pub use error::ErrorReason;
pub use pin::Pin;

/// JSON-RPC method names.
pub mod method {
    pub const INFO: &str = "pkcs11.info";
    pub const SLOTS: &str = "pkcs11.slots";
    pub const SLOTS_WITH_TOKEN_PRESENT: &str = "pkcs11.slotsWithTokenPresent";
    pub const TOKEN: &str = "pkcs11.token";
    pub const CERTIFICATES: &str = "pkcs11.certificates";
    pub const SIGN_DATA: &str = "pkcs11.signData";
    pub const VERIFY_SIGNED_DATA: &str = "pkcs11.verifySignedData";
    pub const VERSION: &str = "keyport.version";
    /// The OpenRPC service discovery method (<https://spec.open-rpc.org/#service-discovery-method>).
    pub const DISCOVER: &str = "rpc.discover";
    pub const SIGN_DATA_BATCH: &str = "pkcs11.signDataBatch";
    pub const SUBSCRIBE_SLOT_EVENTS: &str = "pkcs11.subscribeSlotEvents";
    pub const UNSUBSCRIBE_SLOT_EVENTS: &str = "pkcs11.unsubscribeSlotEvents";
    /// The notification (no `id`) the agent sends to a subscriber of slot events: params
    /// [`crate::SlotEventNotification`]. Not a method a client calls.
    pub const SLOT_EVENT: &str = "pkcs11.slotEvent";

    /// Every method the agent serves.
    pub const ALL: &[&str] = &[
        INFO,
        SLOTS,
        SLOTS_WITH_TOKEN_PRESENT,
        TOKEN,
        CERTIFICATES,
        SIGN_DATA,
        VERIFY_SIGNED_DATA,
        VERSION,
        DISCOVER,
        SIGN_DATA_BATCH,
        SUBSCRIBE_SLOT_EVENTS,
        UNSUBSCRIBE_SLOT_EVENTS,
    ];
}

/// The version of this wire contract (semver): what `keyport.version` says as `protocol`.
/// 1.1: `keyport.version`, `rpc.discover`, MODULE_CRASHED, and the client-side reasons
/// LOCAL_NETWORK_BLOCKED and AGENT_OUTDATED. 1.2: `signData` without `pin` (PIN pad or the
/// agent's PIN prompt), `token.protected_authentication_path`, PIN_ENTRY_CANCELLED and
/// PIN_ENTRY_UNAVAILABLE. 1.3: slot events (`pkcs11.subscribeSlotEvents`,
/// `pkcs11.unsubscribeSlotEvents`, the `pkcs11.slotEvent` notification). 1.4:
/// `pkcs11.signDataBatch`, `signature_scheme` (RSA-PSS), `signature_format` (DER ECDSA),
/// certificate filters. 1.5: the extension door (client-side reasons EXTENSION_UNAVAILABLE and
/// NATIVE_HOST_UNAVAILABLE, [`Door`]); the methods are unchanged.
pub const PROTOCOL_VERSION: &str = "1.5.0";

/// Optional capabilities an agent announces in `keyport.version`.
pub mod feature {
    /// Each PKCS #11 library runs in a process of its own (`module_isolation`).
    pub const MODULE_ISOLATION: &str = "module_isolation";
    /// The agent can ask the person for consent (a desktop prompt is available).
    pub const CONSENT_PROMPT: &str = "consent_prompt";
    /// The agent can ask the person for the PIN itself (pinentry): `signData` may omit `pin`.
    pub const PIN_PROMPT: &str = "pin_prompt";
    /// The agent pushes token insertions and removals (`pkcs11.subscribeSlotEvents`).
    pub const SLOT_EVENTS: &str = "slot_events";
}

/// A method of the contract: its JSON-RPC name and the types of its params and result.
pub trait Method {
    /// The JSON-RPC method name, e.g. `pkcs11.signData`.
    const NAME: &'static str;
    /// Its key in the TypeScript client's `METHODS`, e.g. `signData`.
    const KEY: &'static str;
    /// Its documentation, "`name`: what it does" (the OpenRPC document's method summaries).
    const DOC: &'static str;
    type Params: Serialize + serde::de::DeserializeOwned + TS + JsonSchema + Send + 'static;
    type Result: Serialize + serde::de::DeserializeOwned + TS + JsonSchema + Clone + Send + 'static;
}

macro_rules! methods {
    ($( $(#[doc = $doc:literal])* $ty:ident = $name:path, $key:literal, $params:ty => $result:ty; )+) => {
        $(
            $(#[doc = $doc])*
            pub struct $ty;
            impl Method for $ty {
                const NAME: &'static str = $name;
                const KEY: &'static str = $key;
                const DOC: &'static str = concat!($($doc, "\n"),*);
                type Params = $params;
                type Result = $result;
            }
        )+

        /// Something that wants every method, by type (see [`for_each_method`]).
        pub trait MethodVisitor {
            fn visit<M: Method>(&mut self);
        }

        /// Call `visitor` with every method, in [`method::ALL`] order.
        pub fn for_each_method(visitor: &mut impl MethodVisitor) {
            $( visitor.visit::<$ty>(); )+
        }
    };
}

methods! {
    /// `pkcs11.info`: the library's description.
    Info = method::INFO, "info", ModuleParams => InfoResult;
    /// `pkcs11.slots`: every slot.
    Slots = method::SLOTS, "slots", ModuleParams => SlotsResult;
    /// `pkcs11.slotsWithTokenPresent`: the slots with a token in them.
    SlotsWithTokenPresent = method::SLOTS_WITH_TOKEN_PRESENT, "slotsWithTokenPresent", ModuleParams => SlotsResult;
    /// `pkcs11.token`: what the token in a slot says of itself.
    Token = method::TOKEN, "token", TokenParams => TokenInfo;
    /// `pkcs11.certificates`: the X.509 certificates on a token.
    Certificates = method::CERTIFICATES, "certificates", CertificatesParams => CertificatesResult;
    /// `pkcs11.signData`: sign a digest with a certificate's private key, after consent.
    SignData = method::SIGN_DATA, "signData", SignDataParams => SignDataResult;
    /// `pkcs11.verifySignedData`: check a signature with a certificate's public key.
    VerifySignedData = method::VERIFY_SIGNED_DATA, "verifySignedData", VerifySignedDataParams => VerifySignedDataResult;
    /// `keyport.version`: the agent's version, the protocol's, its methods and features.
    Version = method::VERSION, "version", NoParams => VersionResult;
    /// `rpc.discover`: this contract as an OpenRPC document ([`openrpc::document`]).
    Discover = method::DISCOVER, "discover", NoParams => DiscoverResult;
    /// `pkcs11.signDataBatch`: sign 1 to 256 digests with one certificate's key, after one
    /// consent and one login; the signatures in the same order.
    SignDataBatch = method::SIGN_DATA_BATCH, "signDataBatch", SignDataBatchParams => SignDataBatchResult;
    /// `pkcs11.subscribeSlotEvents`: be told when a token is inserted or removed (the answer is
    /// the subscription id; then `pkcs11.slotEvent` notifications until unsubscribed or closed).
    SubscribeSlotEvents = method::SUBSCRIBE_SLOT_EVENTS, "subscribeSlotEvents", ModuleParams => SubscriptionId;
    /// `pkcs11.unsubscribeSlotEvents`: end a subscription (true if it was this connection's).
    UnsubscribeSlotEvents = method::UNSUBSCRIBE_SLOT_EVENTS, "unsubscribeSlotEvents", UnsubscribeParams => bool;
}

/// The default TCP port of the agent (and of the client's default URL).
pub const DEFAULT_PORT: u16 = 10_443;

/// The name of Keyport's native-messaging host (the browser extension's `connectNative` name and
/// the `name` in the host manifests).
pub const NATIVE_HOST_NAME: &str = "org.keyport.agent";
/// The add-on id of the Keyport extension in Firefox (`browser_specific_settings.gecko.id`).
pub const EXTENSION_GECKO_ID: &str = "keyport@keyport.org";
/// The HTTP header the native-messaging host sets on its WebSocket handshake: `extension`.
pub const DOOR_HEADER: &str = "X-Keyport-Door";

/// Which door a page came through to the agent: the agent's WebSocket directly, or the browser
/// extension and its native-messaging host (which relays to the same WebSocket). The client's
/// `agentInfo()` reports the one it uses as `door`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Door {
    /// `ws://127.0.0.1:PORT` from the page (needs the browser's loopback permission on a public site).
    Websocket,
    /// The Keyport extension → native messaging → the agent (no loopback permission needed).
    Extension,
}

impl Door {
    pub const ALL: [Door; 2] = [Self::Websocket, Self::Extension];

    /// The wire name, e.g. `extension` (also the value of [`DOOR_HEADER`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Websocket => "websocket",
            Self::Extension => "extension",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Params
// ---------------------------------------------------------------------------------------------

/// Params of `pkcs11.info`, `pkcs11.slots` and `pkcs11.slotsWithTokenPresent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleParams {
    /// Path of the PKCS #11 library; absent means the agent's default module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub module: Option<String>,
}

/// Params of a method that takes none (`keyport.version`, `rpc.discover`): `{}` or absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Params of `pkcs11.token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenParams {
    pub slot_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub module: Option<String>,
}

/// Params of `pkcs11.certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificatesParams {
    pub slot_id: u64,
    /// When true each entry also carries `parsed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub parse_certs: Option<bool>,
    /// Only the certificates that pass every condition given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub filter: Option<CertificateFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub module: Option<String>,
}

/// Conditions on the certificates `pkcs11.certificates` lists; each one given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateFilter {
    /// The certificate's key usage extension has this bit. A certificate without the
    /// extension does not pass (it names no usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub key_usage: Option<KeyUsage>,
    /// The certificate is valid at this time (RFC 3339, e.g. `2026-11-27T12:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub valid_at: Option<String>,
    /// The token has (true) or lacks (false) a private key with the certificate's CKA_ID, as far
    /// as it shows its private keys (see PROTOCOL.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub has_private_key: Option<bool>,
}

/// A bit of the X.509 key usage extension (RFC 5280, 4.2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeyUsage {
    DigitalSignature,
    /// Also called contentCommitment.
    NonRepudiation,
    KeyEncipherment,
    DataEncipherment,
    KeyAgreement,
    KeyCertSign,
    CRLSign,
    EncipherOnly,
    DecipherOnly,
}

/// The digest algorithm of the data a page asks to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmReference {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl AlgorithmReference {
    pub const ALL: [AlgorithmReference; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    /// The length in bytes of a digest of this algorithm.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }
}

/// Params of `pkcs11.signData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignDataParams {
    pub slot_id: u64,
    /// Upper-case hex of the certificate's CKA_ID (as `pkcs11.certificates` returns it).
    pub cert_id: String,
    /// The user PIN. Never logged, never echoed, zeroized after the call. Absent: the PIN never
    /// passes through the page: a token with a PIN pad (`protected_authentication_path`) takes
    /// it on the reader's keypad, any other token gets it from the agent's own PIN prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "string")]
    pub pin: Option<Pin>,
    /// Base64 of the digest to sign.
    pub data: String,
    pub algorithm_reference: AlgorithmReference,
    /// RSA keys: `pkcs1` (PKCS #1 v1.5, the default) or `pss` (RSASSA-PSS, MGF1 with the same
    /// hash, salt as long as the hash). EC keys: absent or `pkcs1` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub signature_scheme: Option<SignatureScheme>,
    /// EC keys: `raw` (r||s, the default) or `der` (an ASN.1 `ECDSA-Sig-Value`, what OpenSSL,
    /// CMS and XAdES/PAdES tools expect). RSA signatures are the same either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub signature_format: Option<SignatureFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub module: Option<String>,
}

/// How an RSA key signs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    /// PKCS #1 v1.5 (CKM_RSA_PKCS over the DigestInfo).
    #[default]
    Pkcs1,
    /// RSASSA-PSS (CKM_RSA_PKCS_PSS): MGF1 with the digest's hash, salt length = hash length.
    Pss,
}

/// How an ECDSA signature is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureFormat {
    /// r||s, each as long as the curve's order (what PKCS #11 returns).
    #[default]
    Raw,
    /// DER: `SEQUENCE { r INTEGER, s INTEGER }`.
    Der,
}

/// Params of `pkcs11.signDataBatch`: `pkcs11.signData`'s, with `data` a list.
#[derive(Debug, Clone, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignDataBatchParams {
    pub slot_id: u64,
    pub cert_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "string")]
    pub pin: Option<Pin>,
    /// 1 to 256 base64 digests, all made with `algorithm_reference`.
    pub data: Vec<String>,
    pub algorithm_reference: AlgorithmReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub signature_scheme: Option<SignatureScheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub signature_format: Option<SignatureFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub module: Option<String>,
}

/// The most digests one `pkcs11.signDataBatch` signs.
pub const MAX_BATCH_DIGESTS: usize = 256;

/// Longest `cert_id`, in bytes of CKA_ID (twice as many hex digits). Tokens use ids of 1 to
/// about 64 bytes; a longer one is refused (INVALID_PARAMS) before it reaches a token.
pub const MAX_CERT_ID_BYTES: usize = 255;

/// Params of `pkcs11.verifySignedData`: the signData fields plus the signature.
///
/// Verification uses the certificate's public key; the PIN is not needed and may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifySignedDataParams {
    pub slot_id: u64,
    pub cert_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "string")]
    pub pin: Option<Pin>,
    /// Base64 of the digest that was signed.
    pub data: String,
    pub algorithm_reference: AlgorithmReference,
    /// Base64 of the signature (PKCS #1 v1.5 or PSS for RSA, as `signature_scheme` says; for
    /// ECDSA raw r||s or DER, as `signature_format` says).
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub signature_scheme: Option<SignatureScheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub signature_format: Option<SignatureFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub module: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// Result of `pkcs11.info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct InfoResult {
    /// "major.minor" of the Cryptoki version the library implements.
    pub cryptoki_version: String,
    pub manufacturer_id: String,
    /// CK_INFO flags (reserved, 0 in PKCS #11 v2.40).
    pub flags: u64,
    pub library_description: String,
    /// "major.minor".
    pub library_version: String,
}

/// One entry of `pkcs11.slots` / `pkcs11.slotsWithTokenPresent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct SlotInfo {
    pub slot_id: u64,
    pub description: String,
    /// CK_SLOT_INFO flags: CKF_TOKEN_PRESENT 0x1, CKF_REMOVABLE_DEVICE 0x2, CKF_HW_SLOT 0x4.
    pub flags: u64,
    pub hardware_version: String,
    pub firmware_version: String,
}

/// What the token says about its user PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PinState {
    /// No warning from the token.
    Ok,
    /// At least one wrong PIN was entered since the last success.
    CountLow,
    /// The next wrong PIN locks the token.
    FinalTry,
    /// The user PIN is locked.
    Locked,
}

impl PinState {
    pub const ALL: [PinState; 4] = [Self::Ok, Self::CountLow, Self::FinalTry, Self::Locked];

    /// The wire name, e.g. `final_try`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::CountLow => "count_low",
            Self::FinalTry => "final_try",
            Self::Locked => "locked",
        }
    }
}

/// Result of `pkcs11.token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct TokenInfo {
    pub slot_id: u64,
    pub label: String,
    pub manufacturer_id: String,
    pub model: String,
    pub serial_number: String,
    /// CK_TOKEN_INFO flags as the PKCS #11 bit mask (e.g. CKF_USER_PIN_COUNT_LOW 0x10000).
    pub flags: u64,
    /// CKF_TOKEN_INITIALIZED: the token has been initialised (C_InitToken). `false`: a blank
    /// token (e.g. SoftHSM's free slot) that holds nothing yet: `certificates` lists none, and
    /// nothing can sign with it until its owner initialises it with the vendor's tool.
    pub token_initialized: bool,
    /// The user PIN state decoded from `flags`.
    pub pin_state: PinState,
    /// CKF_PROTECTED_AUTHENTICATION_PATH: the PIN is typed on the reader's own keypad (a PIN-pad
    /// reader), never in the page or on the computer. Send `signData` without `pin`.
    pub protected_authentication_path: bool,
    /// `null` where the token reports CK_UNAVAILABLE_INFORMATION or CK_EFFECTIVELY_INFINITE.
    pub max_session_count: Option<u64>,
    pub session_count: Option<u64>,
    pub max_rw_session_count: Option<u64>,
    pub rw_session_count: Option<u64>,
    pub max_pin_length: u64,
    pub min_pin_length: u64,
    pub total_public_memory: Option<u64>,
    pub free_public_memory: Option<u64>,
    pub total_private_memory: Option<u64>,
    pub free_private_memory: Option<u64>,
    pub hardware_version: String,
    pub firmware_version: String,
}

/// Parsed fields of an X.509 certificate (`parse_certs: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct ParsedCertificate {
    /// The Distinguished Name on one line, in certificate order, e.g. "C=BE, O=Example, CN=Alice".
    pub subject: String,
    pub issuer: String,
    /// The CN of the subject, when there is one.
    pub common_name: Option<String>,
    /// Upper-case hex of the serial number.
    pub serial_number: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// "RSA" or "EC".
    pub public_key_algorithm: String,
    /// Bits of the RSA modulus or of the EC field.
    pub public_key_size: u32,
    /// Named curve of an EC key ("P-256", "P-384", "P-521"), else null.
    pub curve: Option<String>,
    /// Key usage bits by name, e.g. ["digitalSignature", "nonRepudiation"]; empty when absent.
    pub key_usage: Vec<String>,
    /// Upper-case hex of the SHA-256 of the DER.
    pub sha256_fingerprint: String,
}

/// One entry of `pkcs11.certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct CertificateEntry {
    /// Standard base64 of the exact DER on the token.
    pub base64: String,
    /// Upper-case hex of CKA_ID: pass it as `cert_id`.
    pub id: String,
    /// Present when `parse_certs` was true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub parsed: Option<ParsedCertificate>,
}

/// Result of `keyport.version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct VersionResult {
    /// The agent's version (semver), e.g. "0.2.0".
    pub agent: String,
    /// The wire contract's version (semver, [`PROTOCOL_VERSION`]).
    pub protocol: String,
    /// Every method this agent serves.
    pub methods: Vec<String>,
    /// Optional capabilities in force (see [`feature`]).
    pub features: Vec<String>,
}

/// Result of `rpc.discover`: an OpenRPC 1.3 document.
pub type DiscoverResult = serde_json::Value;

/// Result of `pkcs11.slots` and `pkcs11.slotsWithTokenPresent`.
pub type SlotsResult = Vec<SlotInfo>;
/// Result of `pkcs11.certificates`.
pub type CertificatesResult = Vec<CertificateEntry>;
/// Result of `pkcs11.signData`: standard base64 of the signature.
pub type SignDataResult = String;
/// Result of `pkcs11.verifySignedData`.
pub type VerifySignedDataResult = bool;
/// Result of `pkcs11.signDataBatch`: the base64 signatures, in the order of `data`.
pub type SignDataBatchResult = Vec<String>;

/// The id of a slot-event subscription, unique within its connection.
pub type SubscriptionId = u64;

/// Params of `pkcs11.unsubscribeSlotEvents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeParams {
    /// What `pkcs11.subscribeSlotEvents` answered.
    pub subscription: SubscriptionId,
}

/// What happened in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SlotEventKind {
    /// A token is now in the slot (also: a different token replaced the one there).
    Inserted,
    /// The token left the slot (or the slot itself went, e.g. a reader was unplugged).
    Removed,
}

/// One token insertion or removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct SlotEvent {
    /// The PKCS #11 library, as the subscription named it (or the agent's default).
    pub module: String,
    pub slot_id: u64,
    pub event: SlotEventKind,
    /// The token's label: of the token inserted, or of the one removed (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub token_label: Option<String>,
}

/// The params of a `pkcs11.slotEvent` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct SlotEventNotification {
    pub subscription: SubscriptionId,
    pub result: SlotEvent,
}

/// The `data` member of every error object the agent sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, JsonSchema)]
pub struct ErrorData {
    /// Stable symbolic name, see [`ErrorReason`].
    pub reason: ErrorReason,
    /// The token's PIN state, on PIN errors where the token reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub pin_state: Option<PinState>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sign_params_use_snake_case_names_and_reject_unknown_fields() {
        let p: SignDataParams = serde_json::from_value(json!({
            "slot_id": 7, "cert_id": "01", "pin": "1234", "data": "AA==",
            "algorithm_reference": "sha256"
        }))
        .unwrap();
        assert_eq!(p.slot_id, 7);
        assert_eq!(p.pin.as_ref().unwrap().expose(), "1234");
        assert_eq!(p.algorithm_reference, AlgorithmReference::Sha256);

        let err = serde_json::from_value::<SignDataParams>(json!({
            "slotId": 7, "cert_id": "01", "pin": "1", "data": "", "algorithm_reference": "sha256"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("slotId"), "{err}");
    }

    #[test]
    fn unknown_algorithm_is_rejected() {
        let err = serde_json::from_value::<AlgorithmReference>(json!("md5")).unwrap_err();
        assert!(err.to_string().contains("md5"));
    }

    #[test]
    fn digest_lengths() {
        let lens: Vec<usize> = AlgorithmReference::ALL
            .iter()
            .map(|a| a.digest_len())
            .collect();
        assert_eq!(lens, [20, 32, 48, 64]);
    }

    #[test]
    fn the_method_table_names_every_method_once_in_order() {
        struct Names(Vec<(&'static str, &'static str)>);
        impl MethodVisitor for Names {
            fn visit<M: Method>(&mut self) {
                self.0.push((M::NAME, M::KEY));
            }
        }
        let mut names = Names(Vec::new());
        for_each_method(&mut names);
        let got: Vec<&str> = names.0.iter().map(|(n, _)| *n).collect();
        assert_eq!(got, method::ALL);
        for (name, key) in names.0 {
            let bare = name.split_once('.').map(|(_, m)| m);
            assert_eq!(bare, Some(key), "{name}");
        }
    }

    #[test]
    fn pin_state_names_are_the_wire_names() {
        for s in PinState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }

    #[test]
    fn door_names_are_the_wire_names() {
        for d in Door::ALL {
            assert_eq!(serde_json::to_value(d).unwrap(), json!(d.as_str()));
        }
        assert_eq!(Door::Extension.as_str(), "extension");
    }

    #[test]
    fn optional_fields_are_omitted() {
        let v = serde_json::to_value(ModuleParams::default()).unwrap();
        assert_eq!(v, json!({}));
    }
}
