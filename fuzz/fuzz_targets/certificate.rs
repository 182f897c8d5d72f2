//! Certificate parsing and signature verification on bytes anyone could write to a token (the
//! certificate) or send from a page (digest, signature): an answer or a typed error, never a
//! panic. Input: one byte choosing the digest algorithm, two bytes of certificate length, the
//! certificate, then the digest and the signature split in the middle.
#![no_main]

use keyport_protocol::AlgorithmReference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&alg, rest)) = data.split_first() else {
        return;
    };
    let alg = AlgorithmReference::ALL[alg as usize % 4];
    if rest.len() < 2 {
        let _ = keyport::x509::parse_certificate(rest);
        return;
    }
    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let rest = &rest[2..];
    let (cert, tail) = rest.split_at(len.min(rest.len()));
    let _ = keyport::x509::parse_certificate(cert);
    let (digest, sig) = tail.split_at(tail.len() / 2);
    let _ = keyport::x509::verify(cert, alg, digest, sig);
    if digest.len() == alg.digest_len() {
        let _ = keyport::x509::digest_info(alg, digest);
    }
});
