//! The tray shell: a tao event loop on the main thread and a tray-icon icon whose menu is drawn
//! from [`TrayView`]s. All decisions live in [`crate::desktop::tray_model`], the pixels in
//! [`crate::desktop::icon`]; consent, paths and opening a folder are the freedesktop ones
//! ([`super`]).
//!
//! Starting it ([`TrayShell::start`]) checks what tray-icon and tao would otherwise panic on (no
//! display, no AppIndicator library), turns GDK's GL probe off ([`super::gl`]), and builds the
//! event loop, which starts GTK. Any failure: the caller goes on headless.

use super::{consent_ui, default_state_file, gl, open_folder};
use crate::desktop::icon::{icon_rgba, ICON_SIZE};
use crate::desktop::tray_model::{IconState, MenuEntry, TrayModel, TrayView};
use crate::desktop::{ConsentUiChoice, PromptConfig, Running, Shell};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoop, EventLoopBuilder, EventLoopProxy};
use tao::platform::run_return::EventLoopExtRunReturn;
use tray_icon::menu::{
    CheckMenuItem, IsMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu,
};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

/// Events the event loop receives from other threads.
#[derive(Debug)]
pub enum UserEvent {
    Menu(MenuEvent),
    /// The agent's state changed (a prompt went up or down, pause, a remembered site): redraw.
    Refresh,
    /// The server has shut down: leave the loop.
    Stopped,
}

/// A tray icon on a freedesktop desktop (AppIndicator / StatusNotifierItem, or XEmbed).
pub struct TrayShell {
    event_loop: EventLoop<UserEvent>,
    prompts: PromptConfig,
}

impl TrayShell {
    /// Start the toolkit on this thread, which must be the main thread, before any other thread
    /// starts. `Err(why)`: no tray can run here.
    pub fn start(prompts: PromptConfig) -> Result<TrayShell, String> {
        if let Some(why) = no_display() {
            return Err(why);
        }
        // Decided in `main` before any thread started (the logging thread is one); said now.
        gl::log_decision();
        if let Some(why) = no_appindicator() {
            return Err(why);
        }
        let event_loop = quietly(|| EventLoopBuilder::<UserEvent>::with_user_event().build())?;
        Ok(TrayShell {
            event_loop,
            prompts,
        })
    }
}

impl Shell for TrayShell {
    fn consent_ui(&self) -> ConsentUiChoice {
        consent_ui(&self.prompts)
    }

    fn default_state_file(&self) -> Option<PathBuf> {
        default_state_file()
    }

    fn has_tray(&self) -> bool {
        true
    }

    fn on_server_stopped(&self) -> Box<dyn FnOnce() + Send> {
        let proxy = self.event_loop.create_proxy();
        Box::new(move || {
            let _ = proxy.send_event(UserEvent::Stopped);
        })
    }

    fn run(self: Box<Self>, running: Receiver<Running>) {
        let Ok(running) = running.recv() else {
            // The server did not start (it said why).
            return;
        };
        let model = TrayModel::new(
            running.agent,
            running.url,
            running.folder,
            running.quit,
            open_folder,
        );
        if let Err(why) = run_tray(self.event_loop, model) {
            tracing::info!("running headless, without a tray icon: cannot show it ({why})");
        }
    }
}

/// Why tao cannot start here (`None`: it may).
fn no_display() -> Option<String> {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        if !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
            return Some("no display (neither DISPLAY nor WAYLAND_DISPLAY is set)".into());
        }
    }
    None
}

/// Why tray-icon cannot show an icon here (`None`: it may): it loads AppIndicator at run time
/// and panics if it cannot.
pub fn no_appindicator() -> Option<String> {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let names = [
            "libayatana-appindicator3.so.1",
            "libappindicator3.so.1",
            "libayatana-appindicator3.so",
            "libappindicator3.so",
        ];
        // SAFETY: these are the libraries tray-icon itself loads; loading runs their
        // initialisers, which is what tray-icon would do a moment later.
        if !names
            .iter()
            .any(|n| unsafe { libloading::Library::new(n) }.is_ok())
        {
            return Some(
                "the AppIndicator library is missing (install libayatana-appindicator3-1)".into(),
            );
        }
    }
    None
}

/// Run `f`, turning a panic into an error without printing it.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the toolkit panicked".into())
    })
}

fn icon(state: IconState) -> Icon {
    Icon::from_rgba(icon_rgba(state), ICON_SIZE, ICON_SIZE).expect("icon of the right size")
}

/// `&` marks a mnemonic in menu labels: show it literally.
fn text(s: &str) -> String {
    s.replace('&', "&&")
}

fn build_items(entries: &[MenuEntry]) -> Vec<Box<dyn IsMenuItem>> {
    entries
        .iter()
        .map(|e| -> Box<dyn IsMenuItem> {
            match e {
                MenuEntry::Label(l) => Box::new(MenuItem::new(text(l), false, None)),
                MenuEntry::Check { id, label, checked } => Box::new(CheckMenuItem::with_id(
                    id.as_str(),
                    text(label),
                    true,
                    *checked,
                    None,
                )),
                MenuEntry::Action { id, label } => {
                    Box::new(MenuItem::with_id(id.as_str(), text(label), true, None))
                }
                MenuEntry::Submenu { label, entries } => {
                    let items = build_items(entries);
                    let refs: Vec<&dyn IsMenuItem> = items.iter().map(|i| i.as_ref()).collect();
                    Box::new(Submenu::with_items(text(label), true, &refs).expect("submenu items"))
                }
                MenuEntry::Separator => Box::new(PredefinedMenuItem::separator()),
            }
        })
        .collect()
}

fn build_menu(view: &TrayView) -> Menu {
    let menu = Menu::new();
    for item in build_items(&view.menu) {
        menu.append(item.as_ref()).expect("menu item");
    }
    menu
}

/// Run the tray until the server stops (`UserEvent::Stopped`). Returns Err if the icon could not
/// be created; the agent then goes on headless.
fn run_tray(mut event_loop: EventLoop<UserEvent>, model: TrayModel) -> Result<(), String> {
    let proxy: EventLoopProxy<UserEvent> = event_loop.create_proxy();
    let refresh = proxy.clone();
    MenuEvent::set_event_handler(Some(move |e| {
        let _ = proxy.send_event(UserEvent::Menu(e));
    }));
    // No polling: the agent says when its state changes.
    model.on_change(move || {
        let _ = refresh.send_event(UserEvent::Refresh);
    });
    let mut tray: Option<TrayIcon> = None;
    let mut shown: Option<TrayView> = None;
    let mut failure: Option<String> = None;
    let icon_dir = std::env::temp_dir().join(format!("keyport-tray-{}", std::process::id()));

    event_loop.run_return(|event, _, control_flow| {
        *control_flow = ControlFlow::Wait;
        match event {
            Event::NewEvents(StartCause::Init) => {
                let view = model.view();
                let built = quietly(|| {
                    TrayIconBuilder::new()
                        .with_id("keyport")
                        .with_menu(Box::new(build_menu(&view)))
                        .with_icon(icon(view.icon))
                        .with_tooltip(&view.tooltip)
                        .with_title("Keyport")
                        .with_temp_dir_path(&icon_dir)
                        .build()
                });
                match built {
                    Ok(Ok(t)) => {
                        tracing::info!("tray icon shown");
                        tray = Some(t);
                        shown = Some(view);
                    }
                    Ok(Err(e)) => failure = Some(e.to_string()),
                    Err(e) => failure = Some(e),
                }
                if failure.is_some() {
                    *control_flow = ControlFlow::Exit;
                }
            }
            Event::UserEvent(UserEvent::Menu(e)) => {
                let outcome = model.activate(&e.id.0);
                tracing::debug!(?outcome, "tray menu");
                // Redraw at once (a check item toggles itself; the model has the last word).
                shown = None;
                *control_flow = ControlFlow::Poll;
            }
            Event::UserEvent(UserEvent::Stopped) => {
                tray = None;
                *control_flow = ControlFlow::Exit;
            }
            // Every event batch ends here, a Refresh among them.
            Event::NewEvents(_) | Event::MainEventsCleared => {
                if let Some(t) = &tray {
                    let view = model.view();
                    if shown.as_ref() != Some(&view) {
                        if shown.as_ref().map(|s| s.icon) != Some(view.icon) {
                            let _ = t.set_icon(Some(icon(view.icon)));
                        }
                        if shown.as_ref().map(|s| &s.menu) != Some(&view.menu) {
                            t.set_menu(Some(Box::new(build_menu(&view))));
                        }
                        let _ = t.set_tooltip(Some(&view.tooltip));
                        shown = Some(view);
                    }
                }
            }
            _ => {}
        }
    });
    MenuEvent::set_event_handler(None::<fn(MenuEvent)>);
    let _ = std::fs::remove_dir_all(&icon_dir);
    match failure {
        Some(why) => Err(why),
        None => Ok(()),
    }
}
