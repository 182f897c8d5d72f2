//! The module's state between `C_Initialize` and `C_Finalize`: the two slots, the sessions,
//! the login state (one per slot, shared by its sessions, as PKCS #11 wants), and the
//! operations on them. Everything here runs under one mutex (see `lib.rs`); the PIN-pad wait
//! and the hang fault run outside it.

use crate::keys::{Hash, Key, Mech};
use crate::store::{Object, Store, Value, HANDLES_PER_SLOT, MAX_TRIES};
use cryptoki_sys::*;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What a slot holds.
pub struct SlotSpec {
    pub label: &'static str,
    pub serial: &'static str,
    pub description: &'static str,
    /// CKF_PROTECTED_AUTHENTICATION_PATH: the PIN is typed "on the pad" (see `pinpad`).
    pub pinpad: bool,
}

pub const SLOTS: [SlotSpec; 2] = [
    SlotSpec {
        label: "Keyport Soft Token",
        serial: "KPSOFT-0",
        description: "Keyport soft token slot 0",
        pinpad: false,
    },
    SlotSpec {
        label: "Keyport Soft PIN-pad",
        serial: "KPSOFT-1",
        description: "Keyport soft token slot 1 (PIN-pad)",
        pinpad: true,
    },
];

pub const MIN_PIN: usize = 4;
pub const MAX_PIN: usize = 64;
pub const MECHANISMS: [CK_MECHANISM_TYPE; 3] = [CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_ECDSA];

/// A mechanism's parameter as `C_SignInit` got it.
pub enum Param {
    None,
    Pss(CK_RSA_PKCS_PSS_PARAMS),
    /// Something else (or a PSS parameter of the wrong size).
    Other,
}

pub struct Session {
    pub slot: CK_SLOT_ID,
    pub rw: bool,
    /// The handles a `C_FindObjectsInit` found and `C_FindObjects` has not returned yet.
    pub find: Option<Vec<CK_OBJECT_HANDLE>>,
    pub sign: Option<(Arc<Key>, Mech)>,
}

pub struct Token {
    pub store: Store,
    pub objects: Vec<Object>,
    pub logged_in: [bool; SLOTS.len()],
    pub sessions: HashMap<CK_SESSION_HANDLE, Session>,
    next_session: CK_SESSION_HANDLE,
}

type R<T> = Result<T, CK_RV>;

/// Log a problem with the token directory (never a PIN) and answer CKR_DEVICE_ERROR.
pub fn device_error(problem: &str) -> CK_RV {
    eprintln!("keyport-soft-token: {problem}");
    CKR_DEVICE_ERROR
}

pub fn slot_index(slot: CK_SLOT_ID) -> R<usize> {
    usize::try_from(slot)
        .ok()
        .filter(|i| *i < SLOTS.len())
        .ok_or(CKR_SLOT_ID_INVALID)
}

impl Token {
    pub fn new(store: Store) -> Result<Token, String> {
        Ok(Token {
            objects: store.objects()?,
            store,
            logged_in: [false; SLOTS.len()],
            sessions: HashMap::new(),
            next_session: 1,
        })
    }

    pub fn session(&mut self, h: CK_SESSION_HANDLE) -> R<&mut Session> {
        self.sessions.get_mut(&h).ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    pub fn open(&mut self, slot: CK_SLOT_ID, flags: CK_FLAGS) -> R<CK_SESSION_HANDLE> {
        slot_index(slot)?;
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
        }
        let h = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            h,
            Session {
                slot,
                rw: flags & CKF_RW_SESSION != 0,
                find: None,
                sign: None,
            },
        );
        Ok(h)
    }

    /// Close a session; the last one of a slot logs it out (PKCS #11 5.6).
    pub fn close(&mut self, h: CK_SESSION_HANDLE) -> R<()> {
        let s = self.sessions.remove(&h).ok_or(CKR_SESSION_HANDLE_INVALID)?;
        if !self.sessions.values().any(|o| o.slot == s.slot) {
            self.logged_in[slot_index(s.slot)?] = false;
        }
        Ok(())
    }

    pub fn close_all(&mut self, slot: CK_SLOT_ID) -> R<()> {
        let i = slot_index(slot)?;
        self.sessions.retain(|_, s| s.slot != slot);
        self.logged_in[i] = false;
        Ok(())
    }

    /// (sessions, read-write sessions) on `slot`.
    pub fn counts(&self, slot: CK_SLOT_ID) -> (usize, usize) {
        let on = self.sessions.values().filter(|s| s.slot == slot);
        let rw = on.clone().filter(|s| s.rw).count();
        (on.count(), rw)
    }

    pub fn session_state(&mut self, h: CK_SESSION_HANDLE) -> R<(CK_SLOT_ID, CK_STATE, CK_FLAGS)> {
        let s = self.session(h)?;
        let (slot, rw) = (s.slot, s.rw);
        let user = self.logged_in[slot_index(slot)?];
        let state = match (rw, user) {
            (false, false) => CKS_RO_PUBLIC_SESSION,
            (false, true) => CKS_RO_USER_FUNCTIONS,
            (true, false) => CKS_RW_PUBLIC_SESSION,
            (true, true) => CKS_RW_USER_FUNCTIONS,
        };
        let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        Ok((slot, state, flags))
    }

    /// The PIN flags of CK_TOKEN_INFO for `slot` (none if the counter cannot be read).
    pub fn pin_flags(&self, slot: CK_SLOT_ID) -> CK_FLAGS {
        let tries = self.store.wrong_tries(slot).unwrap_or(0);
        let left = MAX_TRIES.saturating_sub(tries);
        let mut flags = 0;
        if left == 0 {
            flags |= CKF_USER_PIN_LOCKED;
        } else {
            if tries > 0 {
                flags |= CKF_USER_PIN_COUNT_LOW;
            }
            if left == 1 {
                flags |= CKF_USER_PIN_FINAL_TRY;
            }
        }
        flags
    }

    /// Before a login on session `h`: its slot, if the user may log in now.
    pub fn login_check(&mut self, h: CK_SESSION_HANDLE, user: CK_USER_TYPE) -> R<CK_SLOT_ID> {
        let slot = self.session(h)?.slot;
        if user != CKU_USER {
            // No SO PIN, no context-specific logins: this token has neither.
            return Err(CKR_USER_TYPE_INVALID);
        }
        if self.logged_in[slot_index(slot)?] {
            return Err(CKR_USER_ALREADY_LOGGED_IN);
        }
        let tries = self.store.wrong_tries(slot).map_err(|e| device_error(&e))?;
        if tries >= MAX_TRIES {
            return Err(CKR_PIN_LOCKED);
        }
        Ok(slot)
    }

    /// The login itself (after [`Token::login_check`]): the PIN against the token's, the
    /// wrong-PIN counter kept.
    pub fn login(&mut self, h: CK_SESSION_HANDLE, pin: &[u8]) -> R<()> {
        let slot = self.login_check(h, CKU_USER)?;
        if pin.len() < MIN_PIN || pin.len() > MAX_PIN {
            return Err(CKR_PIN_LEN_RANGE);
        }
        let right = self.store.pin().map_err(|e| device_error(&e))?;
        let tries = self.store.wrong_tries(slot).map_err(|e| device_error(&e))?;
        if bool::from(right.as_slice().ct_eq(pin)) {
            if tries != 0 {
                self.store
                    .set_wrong_tries(slot, 0)
                    .map_err(|e| device_error(&e))?;
            }
            self.logged_in[slot_index(slot)?] = true;
            Ok(())
        } else {
            self.store
                .set_wrong_tries(slot, tries + 1)
                .map_err(|e| device_error(&e))?;
            Err(CKR_PIN_INCORRECT)
        }
    }

    pub fn logout(&mut self, h: CK_SESSION_HANDLE) -> R<()> {
        let i = slot_index(self.session(h)?.slot)?;
        if !self.logged_in[i] {
            return Err(CKR_USER_NOT_LOGGED_IN);
        }
        self.logged_in[i] = false;
        Ok(())
    }

    /// The object behind `handle` as session `h` sees it: on its slot, and private objects
    /// only once logged in.
    fn object(&mut self, h: CK_SESSION_HANDLE, handle: CK_OBJECT_HANDLE) -> R<&Object> {
        let slot = self.session(h)?.slot;
        let user = self.logged_in[slot_index(slot)?];
        let n = usize::try_from(handle).map_err(|_| CKR_OBJECT_HANDLE_INVALID)?;
        let index = n.checked_sub(1).ok_or(CKR_OBJECT_HANDLE_INVALID)?;
        let (on, i) = (index / HANDLES_PER_SLOT, index % HANDLES_PER_SLOT);
        let o = self
            .objects
            .get(i)
            .filter(|o| usize::try_from(slot) == Ok(on) && (user || !o.private))
            .ok_or(CKR_OBJECT_HANDLE_INVALID)?;
        Ok(o)
    }

    pub fn attribute(
        &mut self,
        h: CK_SESSION_HANDLE,
        handle: CK_OBJECT_HANDLE,
        t: CK_ATTRIBUTE_TYPE,
    ) -> R<Option<Value>> {
        Ok(self.object(h, handle)?.attr(t).cloned())
    }

    pub fn find_init(
        &mut self,
        h: CK_SESSION_HANDLE,
        template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> R<()> {
        let slot = self.session(h)?.slot;
        let i = slot_index(slot)?;
        if self.session(h)?.find.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        let user = self.logged_in[i];
        let found = self
            .objects
            .iter()
            .enumerate()
            .filter(|(_, o)| (user || !o.private) && o.matches(template))
            .filter_map(|(n, _)| CK_OBJECT_HANDLE::try_from(i * HANDLES_PER_SLOT + n + 1).ok())
            .collect();
        self.session(h)?.find = Some(found);
        Ok(())
    }

    pub fn find(&mut self, h: CK_SESSION_HANDLE, max: usize) -> R<Vec<CK_OBJECT_HANDLE>> {
        let left = self
            .session(h)?
            .find
            .as_mut()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        let n = max.min(left.len());
        Ok(left.drain(..n).collect())
    }

    pub fn find_final(&mut self, h: CK_SESSION_HANDLE) -> R<()> {
        self.session(h)?
            .find
            .take()
            .map(|_| ())
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)
    }

    pub fn sign_init(
        &mut self,
        h: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        param: Param,
        key: CK_OBJECT_HANDLE,
    ) -> R<()> {
        if self.session(h)?.sign.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        let slot = self.session(h)?.slot;
        let user = self.logged_in[slot_index(slot)?];
        // A private key of this slot that is hidden only because nobody logged in: the
        // user must log in first (not "no such key").
        let hidden_key = !user
            && usize::try_from(key)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .is_some_and(|i| {
                    usize::try_from(slot) == Ok(i / HANDLES_PER_SLOT)
                        && self
                            .objects
                            .get(i % HANDLES_PER_SLOT)
                            .is_some_and(|o| o.key.is_some())
                });
        if hidden_key {
            return Err(CKR_USER_NOT_LOGGED_IN);
        }
        let object = self.object(h, key).map_err(|_| CKR_KEY_HANDLE_INVALID)?;
        let Some(k) = object.key.clone() else {
            // A certificate or a public key: not for signing here.
            return Err(if object.class == CKO_PUBLIC_KEY {
                CKR_KEY_FUNCTION_NOT_PERMITTED
            } else {
                CKR_KEY_HANDLE_INVALID
            });
        };
        let mech = match (mechanism, param) {
            (CKM_RSA_PKCS, Param::None) => Mech::RsaPkcs,
            (CKM_ECDSA, Param::None) => Mech::Ecdsa,
            (CKM_RSA_PKCS_PSS, Param::Pss(p)) => {
                let hash = Hash::of(p.hashAlg, p.mgf).ok_or(CKR_MECHANISM_PARAM_INVALID)?;
                let salt = usize::try_from(p.sLen).map_err(|_| CKR_MECHANISM_PARAM_INVALID)?;
                Mech::RsaPss { hash, salt }
            }
            (CKM_RSA_PKCS | CKM_ECDSA | CKM_RSA_PKCS_PSS, _) => {
                return Err(CKR_MECHANISM_PARAM_INVALID)
            }
            _ => return Err(CKR_MECHANISM_INVALID),
        };
        k.check(mech)?;
        self.session(h)?.sign = Some((k, mech));
        Ok(())
    }

    /// The signing operation of session `h` (still active), if its user is logged in.
    pub fn sign_op(&mut self, h: CK_SESSION_HANDLE) -> R<(Arc<Key>, Mech)> {
        let s = self.session(h)?;
        let slot = s.slot;
        let op = s.sign.clone().ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        if !self.logged_in[slot_index(slot)?] {
            self.session(h)?.sign = None;
            return Err(CKR_USER_NOT_LOGGED_IN);
        }
        Ok(op)
    }

    /// End the signing operation of session `h` (a signature made, or an error).
    pub fn sign_done(&mut self, h: CK_SESSION_HANDLE) {
        if let Ok(s) = self.session(h) {
            s.sign = None;
        }
    }
}
