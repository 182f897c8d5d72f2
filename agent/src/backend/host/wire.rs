//! The agent ⇄ module host protocol: length-prefixed JSON frames over the host's stdin and
//! stdout.
//!
//! * A frame is a 4-byte big-endian length, then that many bytes of JSON. A length over
//!   [`MAX_FRAME_BYTES`] is a protocol error (the reader stops: nothing is allocated for it).
//! * The host speaks first: a [`Hello`] with its [`PROTOCOL_VERSION`] and whether the module
//!   loaded. The agent refuses a host of another version.
//! * Then the agent sends [`Call`]s (an id and a [`Request`]) and the host answers each with a
//!   [`Reply`] of the same id, in any order (calls run concurrently in the host).
//! * A PIN crosses only inside [`Request::Sign`]. Frame buffers are [`Zeroizing`], the PIN is a
//!   [`Pin`] (zeroized on drop), and both processes free through the zeroing allocator.

use crate::backend::{self, CertificateObject, SlotWait};
use crate::error::AgentError;
use keyport_protocol::{
    AlgorithmReference, ErrorReason, InfoResult, Pin, PinState, SignatureScheme, SlotInfo,
    TokenInfo,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 4;
/// Largest frame either side accepts.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// What a frame's buffer starts at; it grows as the bytes arrive.
const FIRST_READ_BYTES: usize = 64 * 1024;

/// The host's first frame.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub protocol: u32,
    /// `None`: the module loaded and initialised; else why not.
    pub load_error: Option<WireError>,
}

/// A request, and the type of the value its reply carries: the agent's call and the host's
/// answer are typed by the same declaration (see `ops!`).
pub trait Op: Into<Request> {
    type Reply: Serialize + DeserializeOwned;
}

/// Declares each request once: its fields, its reply, and its place in [`Request`].
macro_rules! ops {
    ($( $(#[$doc:meta])* $op:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? } => $reply:ty; )+) => {
        /// What the agent asks of a host.
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Request {
            $( $(#[$doc])* $op($op), )+
        }
        $(
            $(#[$doc])*
            #[derive(Debug, Serialize, Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct $op { $( $(#[$fdoc])* pub $field: $ty, )* }
            impl Op for $op {
                type Reply = $reply;
            }
            impl From<$op> for Request {
                fn from(op: $op) -> Request {
                    Request::$op(op)
                }
            }
        )+
    };
}

ops! {
    Info {} => InfoResult;
    Slots { token_present: bool } => Vec<SlotInfo>;
    Token { slot_id: u64 } => TokenInfo;
    Certificates { slot_id: u64 } => Vec<WireCertificate>;
    KeyIds { slot_id: u64 } => Vec<Hex>;
    Certificate { slot_id: u64, id: Hex } => WireCertificate;
    Sign {
        slot_id: u64,
        key_id: Hex,
        /// None: the reader's PIN pad ([`crate::backend::Credential::PinPad`]).
        pin: Option<Pin>,
        algorithm: AlgorithmReference,
        scheme: SignatureScheme,
        /// Signed in order after one login.
        digests: Vec<Hex>,
    } => Vec<Hex>;
    /// Every slot and the token in it ([`crate::backend::Backend::slot_presence`]).
    SlotPresence {} => Vec<backend::SlotPresence>;
    /// Wait for a slot event, at most this long ([`crate::backend::Backend::wait_slot_event`]).
    WaitSlotEvent { timeout_ms: u64 } => SlotWait;
    LogoutAll {} => ();
    /// Log out, finalise the module and exit.
    Shutdown {} => ();
    /// Answer with `reply_bytes` bytes after `delay_ms` (at most 2 s), touching no module: the
    /// channel's soak test sends requests and gets replies larger than a pipe buffer. The
    /// reply: the payload's length as the host saw it, and the bytes.
    Echo { payload: String, reply_bytes: u32, delay_ms: u32 } => (usize, String);
}

/// Bytes, as a hex string on the wire (JSON has no bytes; hex is simple and cheap at these
/// sizes). Wiped when dropped: digests and ids pass through here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hex(#[serde(with = "hex_bytes")] pub Vec<u8>);

impl Drop for Hex {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A request with its id.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub id: u64,
    pub request: Request,
}

/// An answer: the result's JSON, or an error; or, with `progress`, word that the call is
/// still making headway (a batch signed one more digest): its deadline starts again.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub id: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub progress: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<WireError>,
}

impl Reply {
    /// The answer `result` to call `id`.
    pub fn to(id: u64, result: Result<Box<RawValue>, WireError>) -> Reply {
        let (ok, err) = match result {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        Reply {
            id,
            progress: false,
            ok,
            err,
        }
    }

    /// Call `id` made headway.
    pub fn progress(id: u64) -> Reply {
        Reply {
            id,
            progress: true,
            ok: None,
            err: None,
        }
    }
}

/// An [`AgentError`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireError {
    pub reason: ErrorReason,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_state: Option<PinState>,
}

impl From<&AgentError> for WireError {
    fn from(e: &AgentError) -> Self {
        WireError {
            reason: e.reason,
            message: e.message.clone(),
            pin_state: e.pin_state,
        }
    }
}

impl From<WireError> for AgentError {
    fn from(e: WireError) -> Self {
        AgentError {
            reason: e.reason,
            message: e.message,
            pin_state: e.pin_state,
        }
    }
}

/// A certificate on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireCertificate {
    #[serde(with = "hex_bytes")]
    pub id: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub der: Vec<u8>,
}

impl From<CertificateObject> for WireCertificate {
    fn from(c: CertificateObject) -> Self {
        WireCertificate {
            id: c.id,
            der: c.der,
        }
    }
}

impl From<WireCertificate> for CertificateObject {
    fn from(c: WireCertificate) -> Self {
        CertificateObject {
            id: c.id,
            der: c.der,
        }
    }
}

/// Bytes as hex strings (JSON has no bytes; hex is simple and cheap at these sizes).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the other side closed the channel")]
    Closed,
    #[error("a frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("reading the channel failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Write one frame (a single `write_all`, then flush).
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&framed(payload)?)?;
    w.flush()
}

/// `payload` with its length before it: the bytes of one frame.
fn framed(payload: &[u8]) -> std::io::Result<Zeroizing<Vec<u8>>> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::other("frame over the limit"));
    }
    let mut frame = Zeroizing::new(Vec::with_capacity(payload.len() + 4));
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// Serialize `message` as the bytes of one frame (wiped when dropped, as every copy is).
pub fn frame(message: &impl Serialize) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let bytes = Zeroizing::new(serde_json::to_vec(message).map_err(std::io::Error::other)?);
    framed(&bytes)
}

/// Serialize `message` and write it as one frame. The serialized bytes are wiped after.
pub fn send(w: &mut impl Write, message: &impl Serialize) -> std::io::Result<()> {
    w.write_all(&frame(message)?)?;
    w.flush()
}

/// Frames cut from bytes as they arrive (a reader that cannot block: the agent's reply task).
#[derive(Default)]
pub struct Frames {
    buf: Zeroizing<Vec<u8>>,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if it has all arrived; `Err(length)` for a frame over the limit
    /// (the stream is unusable from there).
    pub fn next_frame(&mut self) -> Result<Option<Zeroizing<Vec<u8>>>, usize> {
        let Some(head) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(len);
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let frame = Zeroizing::new(self.buf[4..4 + len].to_vec());
        // What follows moves to the front; the bytes left past the end are wiped.
        self.buf.copy_within(4 + len.., 0);
        let rest = self.buf.len() - 4 - len;
        self.buf[rest..].fill(0);
        self.buf.truncate(rest);
        if rest == 0 && self.buf.capacity() > FIRST_READ_BYTES {
            // A large frame's room is given back (wiped) rather than kept for the host's life.
            self.buf = Zeroizing::new(Vec::new());
        }
        Ok(Some(frame))
    }
}

/// Read one frame; [`FrameError::Closed`] at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    // Memory follows the bytes that arrive, not the length claimed: a peer that announces 8 MiB
    // and sends nothing costs 64 KiB. (Growing reallocates; the binary's global allocator zeroes
    // what it frees, so no copy of a PIN is left behind.)
    let mut payload = Zeroizing::new(Vec::with_capacity(len.min(FIRST_READ_BYTES)));
    r.take(len as u64).read_to_end(&mut payload)?;
    if payload.len() < len {
        return Err(FrameError::Closed);
    }
    Ok(payload)
}

/// A protocol error as an [`AgentError`]: a host that says something we cannot read is broken.
pub fn garbled(what: &str, module: &str) -> AgentError {
    AgentError::with_message(
        ErrorReason::ModuleCrashed,
        format!("The process serving the PKCS #11 library {module} answered garbage ({what})."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_from_bytes_as_they_arrive_whatever_the_pieces() {
        let mut stream = Vec::new();
        for payload in [&b"one"[..], b"", &[7u8; 70_000][..], b"{}"] {
            write_frame(&mut stream, payload).unwrap();
        }
        for piece in [1, 3, 4, 5, 4096, stream.len()] {
            let mut frames = Frames::default();
            let mut got = Vec::new();
            for bytes in stream.chunks(piece) {
                frames.push(bytes);
                while let Some(f) = frames.next_frame().unwrap() {
                    got.push(f.to_vec());
                }
            }
            assert_eq!(got.len(), 4, "pieces of {piece}");
            assert_eq!(got[0], b"one");
            assert!(got[1].is_empty());
            assert_eq!(got[2], vec![7u8; 70_000]);
            assert_eq!(got[3], b"{}");
            assert!(frames.buf.is_empty());
        }
        let mut frames = Frames::default();
        frames.push(&((MAX_FRAME_BYTES + 1) as u32).to_be_bytes());
        assert_eq!(frames.next_frame().unwrap_err(), MAX_FRAME_BYTES + 1);
    }

    #[test]
    fn frames_round_trip_and_oversize_lengths_are_refused_unread() {
        let mut buf = Vec::new();
        send(
            &mut buf,
            &Call {
                id: 7,
                request: Slots {
                    token_present: true,
                }
                .into(),
            },
        )
        .unwrap();
        send(
            &mut buf,
            &Call {
                id: 8,
                request: LogoutAll {}.into(),
            },
        )
        .unwrap();
        let mut r = &buf[..];
        let a: Call = serde_json::from_slice(&read_frame(&mut r).unwrap()).unwrap();
        let b: Call = serde_json::from_slice(&read_frame(&mut r).unwrap()).unwrap();
        assert_eq!((a.id, b.id), (7, 8));
        assert!(matches!(
            a.request,
            Request::Slots(Slots {
                token_present: true
            })
        ));
        // The op's name is the tag beside its fields.
        let text = serde_json::to_string(&Request::from(Slots {
            token_present: false,
        }))
        .unwrap();
        assert_eq!(text, r#"{"op":"slots","token_present":false}"#);
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
        let huge = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        // Cut in the middle of a frame: closed, not a hang or a panic.
        assert!(matches!(
            read_frame(&mut &buf[..6]),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn a_claimed_length_costs_nothing_until_the_bytes_arrive() {
        /// Says how large a buffer the reader was handed at most.
        struct Measured<'a> {
            data: &'a [u8],
            largest: usize,
        }
        impl Read for Measured<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.largest = self.largest.max(buf.len());
                self.data.read(buf)
            }
        }
        let mut claim = (MAX_FRAME_BYTES as u32).to_be_bytes().to_vec();
        claim.extend_from_slice(b"{}");
        let mut r = Measured {
            data: &claim,
            largest: 0,
        };
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
        assert!(
            r.largest <= FIRST_READ_BYTES,
            "an {MAX_FRAME_BYTES}-byte claim with 2 bytes sent made a {}-byte buffer",
            r.largest
        );
    }

    #[test]
    fn a_sign_request_carries_its_pin_and_bytes_exactly() {
        let call = Call {
            id: 1,
            request: Sign {
                slot_id: 3,
                key_id: Hex(vec![0x02]),
                pin: Some(Pin::new("kpWire9")),
                algorithm: AlgorithmReference::Sha256,
                scheme: SignatureScheme::Pss,
                digests: vec![Hex(vec![0xab; 32]), Hex(vec![0xcd; 32])],
            }
            .into(),
        };
        let json = serde_json::to_string(&call).unwrap();
        let back: Call = serde_json::from_str(&json).unwrap();
        match back.request {
            Request::Sign(Sign {
                key_id,
                pin,
                scheme,
                digests,
                ..
            }) => {
                assert_eq!(key_id.0, [2]);
                assert_eq!(pin.unwrap().expose(), "kpWire9");
                assert_eq!(scheme, SignatureScheme::Pss);
                assert_eq!(digests, [Hex(vec![0xab; 32]), Hex(vec![0xcd; 32])]);
            }
            other => panic!("{other:?}"),
        }
        // Debug output of a request never shows the PIN.
        assert!(!format!("{call:?}").contains("kpWire9"));
        // No PIN: the reader's PIN pad.
        let pad: Request = serde_json::from_str(
            &serde_json::to_string(&Request::from(Sign {
                slot_id: 3,
                key_id: Hex(vec![2]),
                pin: None,
                algorithm: AlgorithmReference::Sha256,
                scheme: Default::default(),
                digests: vec![Hex(vec![0xab; 32])],
            }))
            .unwrap(),
        )
        .unwrap();
        assert!(matches!(pad, Request::Sign(Sign { pin: None, .. })));
    }
}
