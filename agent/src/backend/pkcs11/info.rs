//! Decoding what a module says of itself, its slots and its tokens into the wire types.

use crate::error::{AgentError, Result};
use cryptoki::context::Pkcs11;
use cryptoki::slot::{Limit, Slot};
use cryptoki::types::Version;
use keyport_protocol::{ErrorReason, InfoResult, PinState, SlotInfo, TokenInfo};

pub(super) fn version(v: Version) -> String {
    format!("{}.{}", v.major(), v.minor())
}

fn limit(l: Limit) -> Option<u64> {
    match l {
        Limit::Max(n) => Some(n),
        Limit::Unavailable | Limit::Infinite => None,
    }
}

pub(super) fn slot_of(slot_id: u64) -> Result<Slot> {
    Slot::try_from(slot_id).map_err(|_| AgentError::new(ErrorReason::SlotNotFound))
}

pub(super) fn pin_state(info: &cryptoki::slot::TokenInfo) -> PinState {
    if info.user_pin_locked() {
        PinState::Locked
    } else if info.user_pin_final_try() {
        PinState::FinalTry
    } else if info.user_pin_count_low() {
        PinState::CountLow
    } else {
        PinState::Ok
    }
}

#[allow(clippy::unnecessary_cast)] // CK_FLAGS is a C unsigned long: 32 bits on Windows.
fn token_flags(t: &cryptoki::slot::TokenInfo) -> u64 {
    use cryptoki_sys as s;
    let bits = [
        (t.rng(), s::CKF_RNG),
        (t.write_protected(), s::CKF_WRITE_PROTECTED),
        (t.login_required(), s::CKF_LOGIN_REQUIRED),
        (t.user_pin_initialized(), s::CKF_USER_PIN_INITIALIZED),
        (t.restore_key_not_needed(), s::CKF_RESTORE_KEY_NOT_NEEDED),
        (t.clock_on_token(), s::CKF_CLOCK_ON_TOKEN),
        (
            t.protected_authentication_path(),
            s::CKF_PROTECTED_AUTHENTICATION_PATH,
        ),
        (t.dual_crypto_operations(), s::CKF_DUAL_CRYPTO_OPERATIONS),
        (t.token_initialized(), s::CKF_TOKEN_INITIALIZED),
        (
            t.secondary_authentication(),
            s::CKF_SECONDARY_AUTHENTICATION,
        ),
        (t.user_pin_count_low(), s::CKF_USER_PIN_COUNT_LOW),
        (t.user_pin_final_try(), s::CKF_USER_PIN_FINAL_TRY),
        (t.user_pin_locked(), s::CKF_USER_PIN_LOCKED),
        (t.user_pin_to_be_changed(), s::CKF_USER_PIN_TO_BE_CHANGED),
        (t.so_pin_count_low(), s::CKF_SO_PIN_COUNT_LOW),
        (t.so_pin_final_try(), s::CKF_SO_PIN_FINAL_TRY),
        (t.so_pin_locked(), s::CKF_SO_PIN_LOCKED),
        (t.so_pin_to_be_changed(), s::CKF_SO_PIN_TO_BE_CHANGED),
        (t.error_state(), s::CKF_ERROR_STATE),
    ];
    bits.iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | *bit as u64)
}

/// `pkcs11.info`.
pub(super) fn library_info(ctx: &Pkcs11) -> Result<InfoResult> {
    let info = ctx.get_library_info()?;
    Ok(InfoResult {
        cryptoki_version: version(info.cryptoki_version()),
        manufacturer_id: info.manufacturer_id().trim_end().to_string(),
        flags: 0,
        library_description: info.library_description().trim_end().to_string(),
        library_version: version(info.library_version()),
    })
}

/// Slots read with one `C_GetSlotList` (a module with more costs two calls more).
const SLOTS_AT_ONCE: usize = 32;

/// `pkcs11.slots` and `pkcs11.slotsWithTokenPresent`.
pub(super) fn slots(ctx: &Pkcs11, token_present: bool) -> Result<Vec<SlotInfo>> {
    // One C_GetSlotList, not two (count, then list), unless the module has more slots.
    let slots = ctx.get_slots_within(token_present, SLOTS_AT_ONCE)?;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let info = ctx.get_slot_info(slot)?;
        let flags = (info.token_present() as u64)
            | ((info.removable_device() as u64) << 1)
            | ((info.hardware_slot() as u64) << 2);
        out.push(SlotInfo {
            slot_id: slot.id(),
            description: info.slot_description().trim_end().to_string(),
            flags,
            hardware_version: version(info.hardware_version()),
            firmware_version: version(info.firmware_version()),
        });
    }
    Ok(out)
}

/// `pkcs11.token`.
pub(super) fn token_info(ctx: &Pkcs11, slot_id: u64) -> Result<TokenInfo> {
    let slot = slot_of(slot_id)?;
    let t = ctx.get_token_info(slot)?;
    let opt = |v: Option<usize>| v.map(|n| n as u64);
    Ok(TokenInfo {
        slot_id,
        label: t.label().trim_end().to_string(),
        manufacturer_id: t.manufacturer_id().trim_end().to_string(),
        model: t.model().trim_end().to_string(),
        serial_number: t.serial_number().trim_end().to_string(),
        flags: token_flags(&t),
        token_initialized: t.token_initialized(),
        pin_state: pin_state(&t),
        protected_authentication_path: t.protected_authentication_path(),
        max_session_count: limit(t.max_session_count()),
        session_count: t.session_count(),
        max_rw_session_count: limit(t.max_rw_session_count()),
        rw_session_count: t.rw_session_count(),
        max_pin_length: t.max_pin_length() as u64,
        min_pin_length: t.min_pin_length() as u64,
        total_public_memory: opt(t.total_public_memory()),
        free_public_memory: opt(t.free_public_memory()),
        total_private_memory: opt(t.total_private_memory()),
        free_private_memory: opt(t.free_private_memory()),
        hardware_version: version(t.hardware_version()),
        firmware_version: version(t.firmware_version()),
    })
}

/// Whether the token in `slot_id` is there but blank (no CKF_TOKEN_INITIALIZED). Such a token
/// refuses sessions (SoftHSM: CKR_TOKEN_NOT_RECOGNIZED), which would read as "no token".
pub(super) fn uninitialised(ctx: &Pkcs11, slot_id: u64) -> bool {
    slot_of(slot_id)
        .ok()
        .and_then(|slot| ctx.get_token_info(slot).ok())
        .is_some_and(|t| !t.token_initialized())
}
