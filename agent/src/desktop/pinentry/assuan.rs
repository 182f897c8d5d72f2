//! The Assuan client: the protocol a pinentry speaks on its stdin and stdout, over any pipe
//! pair. A greeting, then commands, each answered by `OK` or `ERR` after any `D` (data) and `S`
//! (status) lines; lines of at most [`MAX_LINE`] bytes.
//!
//! # Why a client of our own
//! Keyport keeps this small client, on tokio's async pipes, rather than using the `pinentry`
//! crate: that crate blocks a thread, cannot kill a pinentry that hangs (a dialog nobody
//! answers, a pinentry whose own timeout does not fire once a key was typed), and keeps the lines
//! it read, the PIN's among them, in buffers that are not wiped. What a pinentry needs of Assuan
//! is little (no `INQUIRE`, no passing of file descriptors, no sockets), and every part of it is
//! a security boundary (below), so it is written here: bounded, wiped, and tested against a
//! hostile server. What it buys is the hard deadline and the kill (`session.rs`) and the wiping.
//!
//! # Assuan is a security boundary
//! What is sent comes partly from the token, which may be hostile (a certificate's subject and
//! issuer). Every text sent is percent-escaped (`%`, CR, LF and every other control character),
//! so no text can end a line and start a command of its own; each line is capped below Assuan's
//! 1000 bytes (cut on a character boundary, never inside an escape, marked with `…`). What comes
//! back is untrusted too: a line longer than Assuan allows, a broken escape, more than
//! [`MAX_DATA`] bytes of data, an `INQUIRE` or any line that is not Assuan is an error.
//!
//! # Secrets
//! The PIN arrives on `D` lines. Every buffer that holds it is [`Zeroizing`]: the read buffer,
//! each line, the percent-decoded data (allocated once at its full size, so it never moves);
//! the PIN then moves, without a copy, into a [`Pin`] (wiped on drop; [`into_pin`]). Neither the
//! PIN nor any line the pinentry sent is logged or put in an error: errors name only the Assuan
//! error code, or the kind of line that was unexpected.

use keyport_protocol::Pin;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::{Zeroize, Zeroizing};

/// Assuan's longest line, line feed included.
pub const MAX_LINE: usize = 1000;

/// The most data (a PIN, decoded) one answer may carry; more is a protocol error.
pub const MAX_DATA: usize = 1024;

/// GnuPG error codes (the low 16 bits of an Assuan error number; the high bits name the source,
/// 5 for pinentry: `ERR 83886179` is source 5, code 99).
pub mod gpg_err {
    pub const TIMEOUT: u32 = 62;
    pub const CANCELED: u32 = 99;
    pub const NOT_CONFIRMED: u32 = 114;
    pub const FULLY_CANCELED: u32 = 198;

    /// The code of an Assuan error number.
    pub fn code(number: u32) -> u32 {
        number & 0xFFFF
    }
}

/// Why a conversation failed. The texts never quote what the pinentry sent.
pub(super) type Failure = String;

/// An Assuan error number as a failure's text: the number, its code and its source, never the
/// message the pinentry sent with it.
pub(super) fn error_text(number: u32) -> String {
    format!(
        "it answered error {number} (code {}, source {})",
        gpg_err::code(number),
        number >> 24
    )
}

/// Whether `c` is sent percent-escaped: the escape character itself, and every control
/// character (CR and LF would end the line; the others have no business on it either).
fn needs_escape(c: char) -> bool {
    c == '%' || c.is_control()
}

/// `text` percent-escaped for an Assuan line, cut (on a character boundary, never inside an
/// escape, with `…` at the end) so that the escaped form takes at most `max` bytes.
fn escape_capped(text: &str, max: usize) -> String {
    const MORE: char = '…';
    let mut escaped = String::new();
    let full: usize = text.chars().map(escaped_len).sum();
    let budget = if full <= max {
        max
    } else {
        max.saturating_sub(MORE.len_utf8())
    };
    for c in text.chars() {
        if escaped.len() + escaped_len(c) > budget {
            break;
        }
        push_escaped(&mut escaped, c);
    }
    if full > max && max >= MORE.len_utf8() {
        escaped.push(MORE);
    }
    escaped
}

fn escaped_len(c: char) -> usize {
    if needs_escape(c) {
        3 * c.len_utf8()
    } else {
        c.len_utf8()
    }
}

fn push_escaped(out: &mut String, c: char) {
    if needs_escape(c) {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            out.push_str(&format!("%{b:02X}"));
        }
    } else {
        out.push(c);
    }
}

/// One command line: `VERB escaped-text`, capped to [`MAX_LINE`] with its line feed.
pub(super) fn command_line(verb: &str, text: &str) -> String {
    let room = MAX_LINE.saturating_sub(verb.len() + 2);
    let escaped = escape_capped(text, room);
    format!("{verb} {escaped}")
}

/// One answer of the server: `OK` (`code` None) or `ERR code`, with the data and status lines
/// that came before it.
pub(super) struct Reply {
    pub(super) code: Option<u32>,
    /// Decoded `D` lines.
    pub(super) data: Option<Zeroizing<Vec<u8>>>,
    /// `S BUTTON_INFO close`: the dialog was closed rather than answered.
    pub(super) closed: bool,
}

/// An Assuan client connection over any pipe pair. Reads into a fixed, wiped buffer.
pub(super) struct Conn<R, W> {
    reader: R,
    writer: W,
    buf: Zeroizing<Vec<u8>>,
    len: usize,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Conn<R, W> {
    pub(super) fn new(reader: R, writer: W) -> Self {
        Conn {
            reader,
            writer,
            // Never grows: a line longer than MAX_LINE is an error before the buffer fills.
            buf: Zeroizing::new(vec![0u8; 2 * MAX_LINE]),
            len: 0,
        }
    }

    pub(super) async fn greeting(&mut self) -> Result<(), Failure> {
        let reply = self.read_reply().await?;
        match reply.code {
            None => Ok(()),
            Some(n) => Err(format!("it did not greet: {}", error_text(n))),
        }
    }

    /// `GETINFO flavor` (`None` if the pinentry does not know the question).
    pub(super) async fn flavor(&mut self) -> Result<Option<String>, Failure> {
        let reply = self.transact("GETINFO flavor").await?;
        if reply.code.is_some() {
            return Ok(None);
        }
        Ok(reply
            .data
            .map(|d| String::from_utf8_lossy(&d).chars().take(64).collect()))
    }

    pub(super) async fn set(&mut self, verb: &str, text: &str) -> Result<(), Failure> {
        if text.is_empty() {
            return Ok(());
        }
        self.expect_ok(&command_line(verb, text)).await
    }

    pub(super) async fn expect_ok(&mut self, line: &str) -> Result<(), Failure> {
        let reply = self.transact(line).await?;
        let verb = line.split(' ').next().unwrap_or_default();
        match reply.code {
            None if reply.data.is_none() => Ok(()),
            None => Err(format!("it sent data in answer to {verb}")),
            Some(n) => Err(format!("it refused {verb}: {}", error_text(n))),
        }
    }

    pub(super) async fn transact(&mut self, line: &str) -> Result<Reply, Failure> {
        debug_assert!(line.len() < MAX_LINE && !line.contains(['\n', '\r']));
        let verb = line.split(' ').next().unwrap_or_default();
        tracing::trace!(verb, bytes = line.len(), "to pinentry");
        let mut out = Vec::with_capacity(line.len() + 1);
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        self.writer
            .write_all(&out)
            .await
            .map_err(|e| format!("it stopped reading ({e})"))?;
        self.writer
            .flush()
            .await
            .map_err(|e| format!("it stopped reading ({e})"))?;
        self.read_reply().await
    }

    /// Lines up to and including `OK` or `ERR`.
    async fn read_reply(&mut self) -> Result<Reply, Failure> {
        let mut reply = Reply {
            code: None,
            data: None,
            closed: false,
        };
        loop {
            let line = self.read_line().await?;
            let l: &[u8] = &line;
            if l == b"OK" || l.starts_with(b"OK ") {
                tracing::trace!("from pinentry: OK");
                return Ok(reply);
            } else if let Some(rest) = l.strip_prefix(b"ERR ") {
                let digits = rest.split(|&b| b == b' ').next().unwrap_or_default();
                let number = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| "it sent an ERR line without an error number".to_string())?;
                tracing::trace!(number, "from pinentry: ERR");
                reply.code = Some(number);
                return Ok(reply);
            } else if l == b"D" || l.starts_with(b"D ") {
                tracing::trace!("from pinentry: D (withheld)");
                let data = reply
                    .data
                    .get_or_insert_with(|| Zeroizing::new(Vec::with_capacity(MAX_DATA)));
                percent_decode_into(l.get(2..).unwrap_or_default(), data)?;
            } else if let Some(status) = l.strip_prefix(b"S ") {
                let mut words = status.split(|&b| b == b' ').filter(|w| !w.is_empty());
                let keyword = words.next().unwrap_or_default();
                tracing::trace!(
                    keyword = %String::from_utf8_lossy(&keyword[..keyword.len().min(32)]),
                    "from pinentry: S"
                );
                if keyword == b"BUTTON_INFO" && words.next() == Some(b"close".as_slice()) {
                    reply.closed = true;
                }
            } else if l.starts_with(b"#") {
                tracing::trace!("from pinentry: a comment");
            } else if l.starts_with(b"INQUIRE") {
                return Err("it asked a question (INQUIRE) nobody set up".to_string());
            } else {
                return Err("it sent a line that is not Assuan".to_string());
            }
        }
    }

    /// The next line, without its line feed, in wiped memory.
    async fn read_line(&mut self) -> Result<Zeroizing<Vec<u8>>, Failure> {
        loop {
            if let Some(end) = self.buf[..self.len].iter().position(|&b| b == b'\n') {
                if end + 1 > MAX_LINE {
                    return Err("it sent a line longer than Assuan allows".to_string());
                }
                let mut line = Zeroizing::new(Vec::with_capacity(end));
                line.extend_from_slice(&self.buf[..end]);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.buf.copy_within(end + 1..self.len, 0);
                let rest = self.len - (end + 1);
                self.buf[rest..self.len].zeroize();
                self.len = rest;
                return Ok(line);
            }
            if self.len >= MAX_LINE {
                return Err("it sent a line longer than Assuan allows".to_string());
            }
            let n = self
                .reader
                .read(&mut self.buf[self.len..])
                .await
                .map_err(|e| format!("cannot read its answer ({e})"))?;
            if n == 0 {
                return Err("it ended before answering".to_string());
            }
            self.len += n;
        }
    }
}

/// Decode Assuan's `%XX` escapes of `escaped` onto `out`, which never grows past [`MAX_DATA`]
/// (its capacity: it never moves, so no copy of the PIN is left behind).
fn percent_decode_into(escaped: &[u8], out: &mut Zeroizing<Vec<u8>>) -> Result<(), Failure> {
    let hex = |b: u8| -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    };
    let mut i = 0;
    while i < escaped.len() {
        let byte = if escaped[i] == b'%' {
            let hi = escaped.get(i + 1).copied().and_then(hex);
            let lo = escaped.get(i + 2).copied().and_then(hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err("it sent data with a broken escape".to_string());
            };
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            escaped[i - 1]
        };
        if out.len() >= MAX_DATA || out.len() >= out.capacity() {
            return Err(format!("it sent more than {MAX_DATA} bytes of data"));
        }
        out.push(byte);
    }
    Ok(())
}

/// The PIN out of the decoded data, moved (not copied) into a [`Pin`].
pub(super) fn into_pin(data: Option<Zeroizing<Vec<u8>>>) -> Result<Pin, Failure> {
    let Some(mut data) = data else {
        return Ok(Pin::new(String::new()));
    };
    match String::from_utf8(std::mem::take(&mut *data)) {
        Ok(s) => Ok(Pin::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err("it sent a PIN that is not UTF-8".to_string())
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Assuan's decoding, as a pinentry does it (the dialogs' tests use it too).
    pub(in crate::desktop::pinentry) fn unescape(s: &str) -> String {
        let mut out = Zeroizing::new(Vec::with_capacity(MAX_DATA * 4));
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn escaping_leaves_no_line_break_and_round_trips() {
        let hostile = "a%b\r\nGETPIN\nBYE\u{0}\u{7f}\u{85}é%0A";
        let line = command_line("SETDESC", hostile);
        assert!(
            !line.contains(['\n', '\r', '\u{0}', '\u{7f}', '\u{85}']),
            "{line}"
        );
        assert_eq!(line.matches(' ').count(), 1, "{line}");
        assert_eq!(unescape(line.strip_prefix("SETDESC ").unwrap()), hostile);
        assert!(line.contains("%250A"), "{line}");
    }

    #[test]
    fn long_texts_are_cut_below_the_line_limit_on_a_boundary() {
        for unit in ["x", "é", "%", "\n", "😀", "a%\n"] {
            let text = unit.repeat(2000);
            let line = command_line("SETDESC", &text);
            assert!(line.len() < MAX_LINE, "{unit:?}: {} bytes", line.len());
            assert!(line.len() > MAX_LINE - 16, "{unit:?}: cut too short");
            let decoded = unescape(line.strip_prefix("SETDESC ").unwrap());
            assert!(decoded.ends_with('…'), "{unit:?}");
            assert!(text.starts_with(decoded.trim_end_matches('…')), "{unit:?}");
        }
        // Short enough: untouched.
        assert_eq!(command_line("SETPROMPT", "PIN:"), "SETPROMPT PIN:");
    }

    /// A conversation with a scripted server over an in-memory pipe: `server` is what the
    /// pinentry sends (all of it at once, which a client must cope with too).
    async fn converse(server: &[u8]) -> (Result<Reply, Failure>, Vec<u8>) {
        let (client_side, mut server_side) = tokio::io::duplex(64 * 1024);
        server_side.write_all(server).await.unwrap();
        // Then it falls silent: the client sees the end of its output.
        server_side.shutdown().await.unwrap();
        let (r, w) = tokio::io::split(client_side);
        let mut conn = Conn::new(r, w);
        let result = async {
            conn.greeting().await?;
            conn.transact("GETPIN").await
        }
        .await;
        drop(conn);
        let mut sent = Vec::new();
        server_side.read_to_end(&mut sent).await.unwrap();
        (result, sent)
    }

    #[tokio::test]
    async fn data_lines_are_joined_and_decoded() {
        let (reply, sent) = converse(
            b"OK Pleased to meet you\n# a comment\nS SOMETHING x\nD 12%2534\nD %0A5 6\nOK\n",
        )
        .await;
        let reply = reply.unwrap();
        assert_eq!(sent, b"GETPIN\n");
        assert_eq!(reply.code, None);
        assert!(!reply.closed);
        let data = reply.data.unwrap();
        assert_eq!(&data[..], b"12%34\n5 6");
        assert_eq!(data.capacity(), MAX_DATA, "the PIN buffer moved");
        let pin = into_pin(Some(data)).unwrap();
        assert_eq!(pin.expose(), "12%34\n5 6");
    }

    #[tokio::test]
    async fn button_info_close_is_noticed() {
        let (reply, _) =
            converse(b"OK\nS BUTTON_INFO close\nERR 83886179 Operation cancelled <Pinentry>\n")
                .await;
        let reply = reply.unwrap();
        assert!(reply.closed);
        assert_eq!(reply.code, Some(83886179));
    }

    #[tokio::test]
    async fn broken_answers_are_errors_that_quote_nothing() {
        let secret = "kpSecret4711";
        let cases: Vec<Vec<u8>> = vec![
            format!("OK\n{secret}\n").into_bytes(),
            format!("OK\nD {secret}%G1\nOK\n").into_bytes(),
            format!("OK\nERR {secret}\n").into_bytes(),
            format!("OK\nINQUIRE {secret}\n").into_bytes(),
            format!("OK\nD {}\nOK\n", "7".repeat(MAX_LINE)).into_bytes(),
            format!("OK\n{}", "7".repeat(3 * MAX_LINE)).into_bytes(),
            format!("OK\nD {}\nD {}\nOK\n", "7".repeat(900), "7".repeat(900)).into_bytes(),
            format!("OK\nD {secret}\n").into_bytes(),
            format!("ERR 5 {secret}\n").into_bytes(),
            format!("{secret}\n").into_bytes(),
            Vec::new(),
        ];
        for case in cases {
            let (reply, _) = converse(&case).await;
            let e = match reply {
                Err(e) => e,
                Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(&case)),
            };
            assert!(!e.contains(secret) && !e.contains("7777"), "{e}");
        }
    }

    #[test]
    fn a_pin_that_is_not_utf8_is_refused() {
        let mut data = Zeroizing::new(Vec::with_capacity(MAX_DATA));
        data.extend_from_slice(b"\xff\xfe");
        assert!(into_pin(Some(data)).is_err());
        assert_eq!(into_pin(None).unwrap().expose(), "");
    }
}
