//! `pkcs11.subscribeSlotEvents`, `pkcs11.unsubscribeSlotEvents`, and the `pkcs11.slotEvent`
//! notifications a subscription sends (see [`crate::events`]).

use super::register_with_notifier;
use crate::error::{AgentError, Result};
use crate::events::Notifier;
use crate::state::Agent;
use jsonrpsee::RpcModule;
use keyport_protocol::{
    method, ErrorReason, SlotEventNotification, SubscribeSlotEvents, UnsubscribeSlotEvents,
};
use std::sync::Arc;

/// A subscription needs a connection to send its notifications on.
fn connection(notifier: Option<Notifier>) -> Result<Notifier> {
    notifier.ok_or_else(|| {
        AgentError::with_message(
            ErrorReason::InvalidRequest,
            "Slot events need a WebSocket connection to be sent on.",
        )
    })
}

/// The text of a `pkcs11.slotEvent` notification.
pub fn notification(params: &SlotEventNotification) -> String {
    serde_json::json!({"jsonrpc": "2.0", "method": method::SLOT_EVENT, "params": params})
        .to_string()
}

pub(super) fn register_all(m: &mut RpcModule<Agent>) {
    register_with_notifier::<SubscribeSlotEvents, _, _>(m, |p, state, notifier| async move {
        let notifier = connection(notifier)?;
        let module = state.module(p.module.as_deref())?;
        let conn = notifier.conn;
        let sink = Arc::new(move |subscription, event: &keyport_protocol::SlotEvent| {
            notifier.send(notification(&SlotEventNotification {
                subscription,
                result: event.clone(),
            }))
        });
        state.subscribe_slot_events(Some(conn), module, sink).await
    });
    register_with_notifier::<UnsubscribeSlotEvents, _, _>(m, |p, state, notifier| async move {
        let conn = connection(notifier)?.conn;
        Ok(state.events.unsubscribe(Some(conn), p.subscription))
    });
}
