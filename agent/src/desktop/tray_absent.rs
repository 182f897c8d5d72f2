//! Stand-in for the tray when the agent is built without the `tray` feature
//! (`cargo build -p keyport --no-default-features`): a headless agent that does not link GTK,
//! for servers, kiosks and containers. Same API as `tray.rs`; there is never a tray.

use super::tray_model::TrayModel;
use std::marker::PhantomData;

/// Events the event loop would receive.
#[derive(Debug)]
pub enum UserEvent {
    /// The agent's state changed.
    Refresh,
    /// The server has shut down.
    Stopped,
}

/// Never constructed: [`event_loop`] always fails.
pub struct EventLoop<T>(PhantomData<T>);

pub struct EventLoopProxy<T>(PhantomData<T>);

impl<T> EventLoop<T> {
    pub fn create_proxy(&self) -> EventLoopProxy<T> {
        EventLoopProxy(PhantomData)
    }
}

impl<T> EventLoopProxy<T> {
    pub fn send_event(&self, _event: T) -> Result<(), std::convert::Infallible> {
        Ok(())
    }
}

pub fn unavailable() -> Option<String> {
    Some("this build has no tray (built without the `tray` feature)".into())
}

pub fn event_loop() -> Result<EventLoop<UserEvent>, String> {
    Err(unavailable().unwrap_or_default())
}

pub fn run(_event_loop: EventLoop<UserEvent>, _model: TrayModel) -> Result<(), String> {
    Err(unavailable().unwrap_or_default())
}
