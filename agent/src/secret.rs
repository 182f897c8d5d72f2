//! Wiping what secrets leave behind where `Drop` cannot reach.
//!
//! Heap blocks are wiped when freed (the zeroing allocator in `main.rs`); a PIN's own buffers are
//! zeroized when dropped (`keyport_protocol::Pin`, cryptoki's `AuthPin`). What remains is the
//! stack of the thread that used the PIN: hashing it (the login cache's verifier keeps a salted
//! SHA-256; the hasher copies the PIN into its block buffer, on the stack) leaves a copy in a
//! frame that is popped, not wiped, and a pooled thread may keep it for as long as it lives.
//! [`scrub_stack`] overwrites it.

/// Bytes of stack overwritten below the caller: deeper than the sign path goes.
pub const SCRUB_BYTES: usize = 64 * 1024;

/// Overwrite the [`SCRUB_BYTES`] of this thread's stack below the caller's frame with zeros.
/// Call it right after the call that handled a secret returns, from the same frame.
#[inline(never)]
pub fn scrub_stack() {
    let wiped = [0u8; SCRUB_BYTES];
    // The zeros must really be written: the optimiser may not prove nobody reads them.
    std::hint::black_box(&wiped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn leave_a_secret_on_the_stack(secret: &[u8; 16]) -> usize {
        let mut frame = [0u8; 4096];
        for chunk in frame.chunks_mut(16) {
            chunk.copy_from_slice(secret);
        }
        std::hint::black_box(&frame);
        frame.as_ptr() as usize
    }

    #[inline(never)]
    fn still_there(addr: usize, secret: &[u8; 16]) -> bool {
        // SAFETY: `addr..addr+4096` is a popped frame of this thread's stack, below our own
        // frame: mapped and readable (stacks are not unmapped as frames pop); only read.
        let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, 4096) };
        bytes.windows(16).any(|w| w == secret)
    }

    #[test]
    fn popped_frames_are_wiped() {
        let secret = *b"kpScrubSecret!!!";
        let addr = leave_a_secret_on_the_stack(&secret);
        // Control: without scrubbing the copy is still there.
        assert!(
            still_there(addr, &secret),
            "the test cannot see its own stack"
        );
        let addr = leave_a_secret_on_the_stack(&secret);
        scrub_stack();
        assert!(!still_there(addr, &secret));
    }
}
