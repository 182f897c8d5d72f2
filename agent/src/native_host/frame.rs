//! Chrome's native-messaging framing (Firefox uses the same): each message is a 4-byte length in
//! the machine's own byte order, then that many bytes of UTF-8 JSON.
//!
//! Reading never buffers more than the caller's bound: a longer message is read through and
//! thrown away in small pieces ([`Frame::TooLarge`]), so that the stream stays in step and the
//! next message can be read. A stream that ends inside a header or a body is an error
//! (`UnexpectedEof`), a stream that ends between messages is the end ([`read`] gives `None`).

use std::io::{self, Read, Write};

/// Longest message a host may send to the browser (Chrome's and Firefox's limit: 1 MB).
pub const MAX_TO_BROWSER: usize = 1024 * 1024;

/// One message from the browser.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A message longer than the bound, read through and dropped: its length.
    TooLarge(u64),
}

/// Read one message of at most `max` bytes. `Ok(None)`: the stream ended between messages.
pub fn read<R: Read>(r: &mut R, max: usize) -> io::Result<Option<Frame>> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a message's length",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_ne_bytes(header) as u64;
    if len > max as u64 {
        let skipped = io::copy(&mut r.take(len), &mut io::sink())?;
        if skipped < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended inside a message",
            ));
        }
        return Ok(Some(Frame::TooLarge(len)));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ended inside a message",
        ),
        _ => e,
    })?;
    Ok(Some(Frame::Message(body)))
}

/// Write one message (at most [`MAX_TO_BROWSER`] bytes) and flush it.
pub fn write<W: Write>(w: &mut W, body: &[u8]) -> io::Result<()> {
    if body.len() > MAX_TO_BROWSER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message of {} bytes is over the browser's limit of {MAX_TO_BROWSER}",
                body.len()
            ),
        ));
    }
    let len = body.len() as u32;
    w.write_all(&len.to_ne_bytes())?;
    w.write_all(body)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per `read`, as a pipe may.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, body).unwrap();
        out
    }

    #[test]
    fn the_length_is_four_bytes_in_the_machines_own_order() {
        let out = framed(b"{\"a\":1}");
        assert_eq!(&out[..4], &7u32.to_ne_bytes());
        if cfg!(target_endian = "little") {
            assert_eq!(&out[..4], &[7, 0, 0, 0]);
        }
        assert_eq!(&out[4..], b"{\"a\":1}");
        // A length of 258 is not read as 0x02010000.
        let mut stream = 258u32.to_ne_bytes().to_vec();
        stream.extend(vec![b' '; 258]);
        let frame = read(&mut stream.as_slice(), 1000).unwrap().unwrap();
        assert_eq!(frame, Frame::Message(vec![b' '; 258]));
    }

    #[test]
    fn messages_split_over_many_reads_are_put_together() {
        let mut stream = framed(b"{\"first\":true}");
        stream.extend(framed(b""));
        stream.extend(framed("{\"second\":\"é\"}".as_bytes()));
        for step in [1, 2, 3, 5, 4096] {
            let mut r = Trickle {
                data: &stream,
                step,
            };
            assert_eq!(
                read(&mut r, 100).unwrap(),
                Some(Frame::Message(b"{\"first\":true}".to_vec()))
            );
            assert_eq!(read(&mut r, 100).unwrap(), Some(Frame::Message(vec![])));
            assert_eq!(
                read(&mut r, 100).unwrap(),
                Some(Frame::Message("{\"second\":\"é\"}".as_bytes().to_vec()))
            );
            assert_eq!(read(&mut r, 100).unwrap(), None, "step {step}");
        }
    }

    #[test]
    fn an_oversize_message_is_skipped_and_the_next_one_still_read() {
        let big = vec![b'x'; 70_000];
        let mut stream = framed(&big);
        stream.extend(framed(b"[1]"));
        let mut r = Trickle {
            data: &stream,
            step: 777,
        };
        assert_eq!(read(&mut r, 1024).unwrap(), Some(Frame::TooLarge(70_000)));
        assert_eq!(
            read(&mut r, 1024).unwrap(),
            Some(Frame::Message(b"[1]".to_vec()))
        );
        assert_eq!(read(&mut r, 1024).unwrap(), None);
        // Exactly at the bound is not over it.
        let at = framed(&[b'1'; 1024]);
        assert!(matches!(
            read(&mut at.as_slice(), 1024).unwrap(),
            Some(Frame::Message(m)) if m.len() == 1024
        ));
    }

    #[test]
    fn a_stream_cut_inside_a_message_is_an_error_not_an_end() {
        let whole = framed(b"{\"id\":1}");
        for cut in [1, 3, 4, 6] {
            let err = read(&mut &whole[..cut], 100).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        // Cut inside a message that is being skipped.
        let big = framed(&[b'x'; 5000]);
        let err = read(&mut &big[..2000], 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // A header claiming 4 GiB with nothing behind it does not allocate it.
        let huge = u32::MAX.to_ne_bytes();
        let err = read(&mut &huge[..], 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn nothing_over_the_browsers_limit_is_written() {
        let mut out = Vec::new();
        assert!(write(&mut out, &vec![b'1'; MAX_TO_BROWSER]).is_ok());
        let err = write(&mut Vec::new(), &vec![b'1'; MAX_TO_BROWSER + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(out.len(), MAX_TO_BROWSER + 4);
    }
}
