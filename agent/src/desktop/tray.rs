//! The tray shell, the same on every desktop that has a tray (freedesktop.org, Windows): a tao
//! event loop on the main thread and a tray-icon icon whose menu is drawn from [`TrayView`]s.
//! All decisions live in [`crate::desktop::tray_model`], the pixels in [`crate::desktop::icon`];
//! consent, paths and opening a folder are the [`Desktop`]'s it is started with.
//!
//! A desktop checks first what tray-icon and tao would panic on there (`freedesktop/tray.rs`: no
//! display, no AppIndicator), then [`TrayShell::start`] builds the event loop, which starts the
//! toolkit (GTK on Linux, a hidden message window on Windows). Any failure: the caller goes on
//! headless.

use crate::desktop::icon::{icon_rgba, ICON_SIZE};
use crate::desktop::tray_model::{IconState, MenuEntry, TrayModel, TrayView};
use crate::desktop::{ConsentUiChoice, Desktop, PromptConfig, Running, Shell};
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

/// A tray icon: an AppIndicator / StatusNotifierItem or XEmbed icon on a freedesktop.org
/// desktop, a notification-area icon on Windows.
pub struct TrayShell {
    event_loop: EventLoop<UserEvent>,
    prompts: PromptConfig,
    desktop: Desktop,
}

impl TrayShell {
    /// Start the toolkit on this thread, which must be the main thread, before any other thread
    /// starts. `Err(why)`: no tray can run here. The desktop has checked what it must first.
    pub fn start(prompts: PromptConfig, desktop: Desktop) -> Result<TrayShell, String> {
        let event_loop = quietly(|| EventLoopBuilder::<UserEvent>::with_user_event().build())?;
        Ok(TrayShell {
            event_loop,
            prompts,
            desktop,
        })
    }
}

impl Shell for TrayShell {
    fn consent_ui(&self) -> ConsentUiChoice {
        (self.desktop.consent_ui)(&self.prompts)
    }

    fn default_state_file(&self) -> Option<PathBuf> {
        (self.desktop.default_state_file)()
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
            self.desktop.open_folder,
        );
        if let Err(why) = run_tray(self.event_loop, model) {
            tracing::info!("running headless, without a tray icon: cannot show it ({why})");
        }
    }
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
