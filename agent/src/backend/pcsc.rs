//! The smart-card service (pcscd) that card libraries such as OpenSC talk to: whether it runs,
//! and what to tell a person whose library lists no slot.

/// Whether pcscd (the PC/SC daemon smart-card libraries talk to) runs: its socket exists.
pub fn pcscd_running() -> bool {
    let socket = std::env::var_os("PCSCLITE_CSOCK_NAME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/run/pcscd/pcscd.comm".into());
    std::fs::metadata(socket).is_ok()
}

/// The hint for a module that lists no slot.
pub fn no_slot_hint() -> String {
    if pcscd_running() {
        "it lists no slot: no card reader was found (pcscd is running; is the reader plugged in?)"
            .into()
    } else {
        "it lists no slot: no card reader was found, and pcscd is not running (smart-card \
         libraries such as OpenSC need it: `systemctl start pcscd.socket`, package pcscd)"
            .into()
    }
}
