//! One loaded PKCS #11 module: loading it (one per library file, however it is named), the
//! state kept per slot (bounded), and what it says of its slots.

use super::events::{field, Waited, Waiter};
use super::token::TokenState;
use super::{error, info, lock};
use crate::allowlist::{AllowedModule, ModuleIdentity};
use crate::backend::{SlotPresence, SlotWait, TokenIdentity};
use crate::error::{AgentError, Result};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use keyport_protocol::ErrorReason;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Slots whose state one module keeps (a real module has a handful; ids that name no slot
/// never get state).
pub(super) const MAX_TOKENS_PER_MODULE: usize = 64;

/// The loaded modules, by the file they are (one library = one module, whatever path named
/// it), and the paths already resolved to one of them.
#[derive(Default)]
pub(super) struct Modules {
    pub(super) by_identity: HashMap<ModuleIdentity, Arc<Module>>,
    pub(super) by_path: HashMap<String, Arc<Module>>,
}

pub(super) struct Module {
    /// The file loaded (symlinks resolved), for logs and messages.
    pub(super) name: String,
    pub(super) ctx: Pkcs11,
    pub(super) tokens: Mutex<HashMap<u64, Arc<TokenState>>>,
    /// What [`Backend::slot_presence`] last saw in each slot.
    pub(super) presence: Mutex<HashMap<u64, Option<TokenIdentity>>>,
    /// The module's own slot events (`C_WaitForSlotEvent`).
    pub(super) waiter: Waiter,
}

impl Modules {
    /// The loaded module `allowed` names, loading and initialising it on first use. Two paths
    /// to one file (a symlink, a hard link) are one module: one context, one lock per token.
    pub(super) fn get_or_load(&mut self, allowed: &AllowedModule) -> Result<Arc<Module>> {
        let path = allowed.path();
        let modules = self;
        if let Some(m) = modules.by_path.get(path) {
            return Ok(m.clone());
        }
        let identity = allowed.identity().map_err(|e| {
            tracing::warn!(module = path, error = %e, "cannot find PKCS #11 module");
            AgentError::with_message(
                ErrorReason::ModuleLoadFailed,
                format!("The PKCS #11 library {path} could not be found: {e}."),
            )
        })?;
        if let Some(m) = modules.by_identity.get(&identity).cloned() {
            tracing::info!(module = path, loaded = %m.name, "another path to a loaded PKCS #11 module");
            modules.by_path.insert(path.to_string(), m.clone());
            return Ok(m);
        }
        let name = identity.canonical.display().to_string();
        let ctx = Pkcs11::new(&identity.canonical).map_err(|e| {
            let why = error::describe(&e);
            tracing::warn!(module = %name, "cannot load PKCS #11 module: {why}");
            AgentError::with_message(
                ErrorReason::ModuleLoadFailed,
                format!("The PKCS #11 library {path} could not be loaded: {why}."),
            )
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                let why = error::describe(&e);
                tracing::warn!(module = %name, "C_Initialize failed: {why}");
                return Err(AgentError::with_message(
                    ErrorReason::ModuleLoadFailed,
                    format!("The PKCS #11 library {path} failed to initialise: {why}."),
                ));
            }
        }
        tracing::info!(module = %name, "PKCS #11 module loaded");
        let m = Arc::new(Module {
            name,
            ctx,
            tokens: Mutex::new(HashMap::new()),
            presence: Mutex::new(HashMap::new()),
            waiter: Waiter::default(),
        });
        modules.by_identity.insert(identity, m.clone());
        modules.by_path.insert(path.to_string(), m.clone());
        Ok(m)
    }
}

impl Module {
    /// The state of a slot that exists. An id that names no slot gets SLOT_NOT_FOUND and
    /// leaves nothing behind; the map is bounded (slots are few, and state of a slot that is
    /// idle and logged out is cheap to drop).
    pub(super) fn token_state(&self, slot_id: u64) -> Result<Arc<TokenState>> {
        if let Some(t) = lock(&self.tokens).get(&slot_id) {
            return Ok(t.clone());
        }
        let slot = info::slot_of(slot_id)?;
        self.ctx.get_slot_info(slot)?;
        let mut tokens = lock(&self.tokens);
        if tokens.len() >= MAX_TOKENS_PER_MODULE {
            tokens.retain(|_, t| {
                Arc::strong_count(t) > 1
                    || t.login
                        .try_read()
                        .map(|l| l.verifier.is_some())
                        .unwrap_or(true)
            });
        }
        if tokens.len() >= MAX_TOKENS_PER_MODULE && !tokens.contains_key(&slot_id) {
            return Err(AgentError::with_message(
                ErrorReason::DeviceError,
                format!(
                    "The PKCS #11 library {} has more than {MAX_TOKENS_PER_MODULE} slots in use.",
                    self.name
                ),
            ));
        }
        Ok(tokens
            .entry(slot_id)
            .or_insert_with(|| Arc::new(TokenState::new(slot)))
            .clone())
    }

    pub(super) fn tokens(&self) -> Vec<Arc<TokenState>> {
        lock(&self.tokens).values().cloned().collect()
    }

    /// How many slots have state (for tests of the bound).
    pub(super) fn tokens_held(&self) -> usize {
        lock(&self.tokens).len()
    }

    /// What is in each slot now.
    fn presence_now(&self) -> Result<Vec<SlotPresence>> {
        let mut out = Vec::new();
        for slot in self.ctx.get_all_slots()? {
            let present = self
                .ctx
                .get_slot_info(slot)
                .map(|i| i.token_present())
                .unwrap_or(false);
            let token = if present {
                // A token that vanishes between the two calls is simply absent.
                self.ctx.get_token_info(slot).ok().map(|t| TokenIdentity {
                    label: field(t.label()),
                    serial: field(t.serial_number()),
                })
            } else {
                None
            };
            out.push(SlotPresence {
                slot_id: slot.id(),
                token,
            });
        }
        Ok(out)
    }

    /// Drop what is kept of the token in `slot_id` (it left, or may have).
    pub(super) fn token_gone(&self, slot_id: u64) {
        if let Some(t) = lock(&self.tokens).get(&slot_id) {
            tracing::debug!(
                slot = slot_id,
                "token state dropped: the token left or changed"
            );
            t.invalidate();
        }
    }

    pub(super) fn presence(&self) -> Result<Vec<SlotPresence>> {
        let now = self.presence_now()?;
        let mut seen = lock(&self.presence);
        for slot in &now {
            let before = seen.get(&slot.slot_id);
            if before.is_some_and(|b| *b != slot.token) {
                self.token_gone(slot.slot_id);
            }
        }
        for (slot_id, _) in seen.iter() {
            if !now.iter().any(|s| s.slot_id == *slot_id) {
                self.token_gone(*slot_id);
            }
        }
        // Bounded like the token states: a module lists a handful of slots.
        *seen = now
            .iter()
            .take(MAX_TOKENS_PER_MODULE)
            .map(|s| (s.slot_id, s.token.clone()))
            .collect();
        Ok(now)
    }

    pub(super) fn wait_events(&self, timeout: Duration) -> SlotWait {
        match self.waiter.wait(&self.ctx, timeout) {
            Waited::Slots(slots) => {
                for slot in slots {
                    self.token_gone(slot);
                }
                SlotWait::Event
            }
            Waited::Quiet => SlotWait::Quiet,
            Waited::Unsupported => SlotWait::Unsupported,
        }
    }
}
