//! The agent ⇄ module host framing: arbitrary bytes on the channel (a broken or hostile host,
//! a truncated stream) read as frames and parsed as every message kind, from both sides. Never
//! a panic, never an allocation past the frame limit; a frame that parses re-encodes to a frame
//! that parses to the same message.
#![no_main]

use keyport::backend::host::wire::{self, Call, Hello, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    for _ in 0..8 {
        let Ok(frame) = wire::read_frame(&mut input) else {
            break;
        };
        assert!(frame.len() <= wire::MAX_FRAME_BYTES);
        if let Ok(call) = serde_json::from_slice::<Call>(&frame) {
            let mut out = Vec::new();
            wire::send(&mut out, &call).unwrap();
            let again: Call = serde_json::from_slice(&wire::read_frame(&mut &out[..]).unwrap())
                .expect("a call re-encodes to a call");
            assert_eq!(again.id, call.id);
        }
        let _ = serde_json::from_slice::<Reply>(&frame);
        let _ = serde_json::from_slice::<Hello>(&frame);
    }
});
