//! An in-memory backend for fast unit and in-process tests of validation, policy and error
//! mapping. It signs nothing real: `sign` returns `FAKE-SIG:` followed by the digest. Features are
//! also tested end to end against SoftHSM (see `tests/`).

use super::{
    Backend, CertificateObject, Credential, SignRequest, SlotPresence, SlotWait, TokenIdentity,
};
use crate::allowlist::AllowedModule;
use crate::error::{AgentError, Result};
use keyport_protocol::{ErrorReason, InfoResult, PinState, SlotInfo, TokenInfo};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub struct FakeBackend {
    /// The one slot with a token.
    pub slot_id: u64,
    /// An empty slot.
    pub empty_slot_id: u64,
    pub pin: String,
    pub certificates: Vec<CertificateObject>,
    /// How many times `sign` reached the "token".
    pub sign_calls: AtomicUsize,
    /// `sign` waits here while the gate is shut (to test time limits and in-flight bounds
    /// without racing a clock).
    pub sign_gate: Gate,
    /// The token has a PIN pad: what the person "types" on it (None: they press Cancel).
    pub pin_pad: Option<Option<String>>,
    /// Whether the token is in its slot (for the slot watcher; the other methods ignore it).
    pub present: AtomicBool,
    /// How many times `slot_presence` looked.
    pub presence_calls: AtomicUsize,
}

/// A gate a test shuts to hold calls and opens to let them go. A held call gives up after
/// 30 s, so a failing test cannot hang its runtime's shutdown.
#[derive(Default)]
pub struct Gate {
    shut: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    pub fn shut(&self) {
        *self.shut.lock().unwrap() = true;
    }

    pub fn open(&self) {
        *self.shut.lock().unwrap() = false;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let shut = self.shut.lock().unwrap();
        let _ = self
            .changed
            .wait_timeout_while(shut, Duration::from_secs(30), |shut| *shut);
    }
}

impl Default for FakeBackend {
    fn default() -> Self {
        FakeBackend {
            slot_id: 1,
            empty_slot_id: 2,
            pin: "1234".into(),
            certificates: vec![CertificateObject {
                id: vec![0x01],
                der: b"fake-der".to_vec(),
            }],
            sign_calls: AtomicUsize::new(0),
            sign_gate: Gate::default(),
            pin_pad: None,
            present: AtomicBool::new(true),
            presence_calls: AtomicUsize::new(0),
        }
    }
}

impl FakeBackend {
    fn check_slot(&self, slot_id: u64) -> Result<()> {
        if slot_id == self.slot_id {
            Ok(())
        } else if slot_id == self.empty_slot_id {
            Err(ErrorReason::TokenNotPresent.into())
        } else {
            Err(ErrorReason::SlotNotFound.into())
        }
    }

    pub fn sign_calls(&self) -> usize {
        self.sign_calls.load(Ordering::SeqCst)
    }
}

impl Backend for FakeBackend {
    fn info(&self, _module: &AllowedModule) -> Result<InfoResult> {
        Ok(InfoResult {
            cryptoki_version: "2.40".into(),
            manufacturer_id: "Keyport".into(),
            flags: 0,
            library_description: "Fake backend".into(),
            library_version: "1.0".into(),
        })
    }

    fn slots(&self, _module: &AllowedModule, token_present: bool) -> Result<Vec<SlotInfo>> {
        let slot = |id, flags| SlotInfo {
            slot_id: id,
            description: format!("fake slot {id}"),
            flags,
            hardware_version: "1.0".into(),
            firmware_version: "1.0".into(),
        };
        let mut out = vec![slot(self.slot_id, 1)];
        if !token_present {
            out.push(slot(self.empty_slot_id, 0));
        }
        Ok(out)
    }

    fn token(&self, _module: &AllowedModule, slot_id: u64) -> Result<TokenInfo> {
        self.check_slot(slot_id)?;
        Ok(TokenInfo {
            slot_id,
            label: "fake".into(),
            manufacturer_id: "Keyport".into(),
            model: "fake".into(),
            serial_number: "0001".into(),
            flags: 0x400 | if self.pin_pad.is_some() { 0x100 } else { 0 },
            token_initialized: true,
            pin_state: PinState::Ok,
            protected_authentication_path: self.pin_pad.is_some(),
            max_session_count: None,
            session_count: Some(0),
            max_rw_session_count: None,
            rw_session_count: Some(0),
            max_pin_length: 32,
            min_pin_length: 4,
            total_public_memory: None,
            free_public_memory: None,
            total_private_memory: None,
            free_private_memory: None,
            hardware_version: "1.0".into(),
            firmware_version: "1.0".into(),
        })
    }

    fn certificates(
        &self,
        _module: &AllowedModule,
        slot_id: u64,
    ) -> Result<Vec<CertificateObject>> {
        self.check_slot(slot_id)?;
        Ok(self.certificates.clone())
    }

    /// The fake's key: the first certificate's id.
    fn key_ids(&self, _module: &AllowedModule, slot_id: u64) -> Result<Vec<Vec<u8>>> {
        self.check_slot(slot_id)?;
        Ok(self
            .certificates
            .iter()
            .take(1)
            .map(|c| c.id.clone())
            .collect())
    }

    fn certificate(
        &self,
        module: &AllowedModule,
        slot_id: u64,
        id: &[u8],
    ) -> Result<CertificateObject> {
        self.certificates(module, slot_id)?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ErrorReason::CertificateNotFound.into())
    }

    fn sign(&self, module: &AllowedModule, req: &SignRequest<'_>) -> Result<Vec<Vec<u8>>> {
        self.certificate(module, req.slot_id, req.key_id)?;
        self.sign_calls.fetch_add(1, Ordering::SeqCst);
        self.sign_gate.pass();
        let typed = match (req.credential, &self.pin_pad) {
            (Credential::Pin(pin), _) => pin.expose(),
            (Credential::PinPad, Some(Some(typed))) => typed.as_str(),
            (Credential::PinPad, Some(None)) => {
                return Err(ErrorReason::PinEntryCancelled.into());
            }
            (Credential::PinPad, None) => return Err(ErrorReason::PinEntryUnavailable.into()),
        };
        if typed != self.pin {
            return Err(
                AgentError::new(ErrorReason::PinIncorrect).with_pin_state(PinState::CountLow)
            );
        }
        Ok(req
            .digests
            .iter()
            .map(|d| {
                let mut sig = b"FAKE-SIG:".to_vec();
                sig.extend_from_slice(d);
                sig
            })
            .collect())
    }

    fn slot_presence(&self, _module: &AllowedModule) -> Result<Vec<SlotPresence>> {
        self.presence_calls.fetch_add(1, Ordering::SeqCst);
        let token = self.present.load(Ordering::SeqCst).then(|| TokenIdentity {
            label: "fake".into(),
            serial: "0001".into(),
        });
        Ok(vec![
            SlotPresence {
                slot_id: self.slot_id,
                token,
            },
            SlotPresence {
                slot_id: self.empty_slot_id,
                token: None,
            },
        ])
    }

    /// The fake has no events of its own: the watcher polls it.
    fn wait_slot_event(&self, _module: &AllowedModule, _timeout: Duration) -> Result<SlotWait> {
        Ok(SlotWait::Unsupported)
    }

    fn logout_all(&self) {}
}
