//! What the tray shows and what its menu does, with no toolkit in sight: [`TrayModel::view`]
//! turns the agent's state into a [`TrayView`] (icon state, tooltip, menu entries), and
//! [`TrayModel::activate`] carries out a menu item by its id. A tray shell (e.g.
//! `freedesktop/tray.rs`) only draws views (with [`super::icon`]'s pixels) and forwards
//! clicks, so everything here is unit-tested.

use crate::i18n;
use crate::state::Agent;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which icon the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconState {
    Idle,
    /// At least one signature request waits for the person's answer.
    AwaitingConsent,
    /// Signing is paused (wins over AwaitingConsent: nothing will be signed).
    Paused,
}

/// One menu entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuEntry {
    /// Text that cannot be clicked.
    Label(String),
    /// A toggle.
    Check {
        id: String,
        label: String,
        checked: bool,
    },
    Action {
        id: String,
        label: String,
    },
    Submenu {
        label: String,
        entries: Vec<MenuEntry>,
    },
    Separator,
}

/// Everything the tray shows at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    pub icon: IconState,
    pub tooltip: String,
    pub menu: Vec<MenuEntry>,
}

/// A menu command, and its item id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    TogglePause,
    Revoke(String),
    OpenFolder,
    Quit,
}

const REVOKE_PREFIX: &str = "revoke:";

impl Command {
    pub fn id(&self) -> String {
        match self {
            Command::TogglePause => "pause".into(),
            Command::Revoke(origin) => format!("{REVOKE_PREFIX}{origin}"),
            Command::OpenFolder => "open-folder".into(),
            Command::Quit => "quit".into(),
        }
    }

    pub fn from_id(id: &str) -> Option<Command> {
        match id {
            "pause" => Some(Command::TogglePause),
            "open-folder" => Some(Command::OpenFolder),
            "quit" => Some(Command::Quit),
            _ => id
                .strip_prefix(REVOKE_PREFIX)
                .filter(|o| !o.is_empty())
                .map(|o| Command::Revoke(o.to_string())),
        }
    }
}

/// What a menu click did.
#[derive(Debug)]
pub enum Outcome {
    /// Signing paused; the tokens are being logged out on this thread.
    Paused {
        logout: std::thread::JoinHandle<()>,
    },
    Resumed,
    /// The site was (true) or was no longer (false) remembered.
    Revoked {
        origin: String,
        was_remembered: bool,
    },
    Opened(PathBuf),
    OpenFailed(String),
    /// A clean shutdown was requested; the toolkit layer exits when the server has stopped.
    QuitRequested,
    Unknown(String),
}

type QuitFn = Box<dyn Fn() + Send + Sync>;
type OpenFn = Box<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>;

/// The tray's state and actions over the running agent.
pub struct TrayModel {
    state: Arc<Agent>,
    url: String,
    version: String,
    folder: Option<PathBuf>,
    quit: QuitFn,
    open: OpenFn,
}

impl TrayModel {
    /// `url`: where the agent listens; `folder`: the folder "Open settings and log folder"
    /// opens (none: the item is not shown); `quit`: starts the clean shutdown; `open`: shows a
    /// folder to the person (e.g. `xdg-open`).
    pub fn new(
        state: Arc<Agent>,
        url: String,
        folder: Option<PathBuf>,
        quit: impl Fn() + Send + Sync + 'static,
        open: impl Fn(&Path) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> TrayModel {
        TrayModel {
            state,
            url,
            version: env!("CARGO_PKG_VERSION").to_string(),
            folder,
            quit: Box::new(quit),
            open: Box::new(open),
        }
    }

    pub fn icon_state(&self) -> IconState {
        if self.state.consent.is_paused() {
            IconState::Paused
        } else if self.state.consent.pending() > 0 {
            IconState::AwaitingConsent
        } else {
            IconState::Idle
        }
    }

    /// Call `f` whenever what [`Self::view`] shows may have changed, from any thread.
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        let f = Arc::new(f);
        let g = f.clone();
        self.state.consent.on_change(move || f());
        self.state.tokens.on_change(move || g());
    }

    /// The "Tokens" submenu: each token present, by label, with its library and slot.
    fn token_entries(&self) -> Vec<MenuEntry> {
        let tokens = self.state.tokens.list();
        if tokens.is_empty() {
            return vec![MenuEntry::Label(i18n::text("tray-no-token", &[]))];
        }
        tokens
            .into_iter()
            .map(|(module, slot, label)| {
                let library = Path::new(&module)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or(module);
                let label = if label.is_empty() {
                    i18n::text("tray-token-no-label", &[])
                } else {
                    label
                };
                MenuEntry::Label(i18n::text(
                    "tray-token",
                    &[
                        ("label", (&label).into()),
                        ("library", (&library).into()),
                        ("slot", slot.into()),
                    ],
                ))
            })
            .collect()
    }

    pub fn view(&self) -> TrayView {
        let consent = &self.state.consent;
        let paused = consent.is_paused();
        let pending = consent.pending();
        let status = if paused {
            i18n::text("tray-paused", &[])
        } else if pending > 0 {
            i18n::text("tray-pending", &[("count", pending.into())])
        } else {
            i18n::text("tray-ready", &[])
        };
        let sites = consent.remembered.list();
        let site_entries = if sites.is_empty() {
            vec![MenuEntry::Label(i18n::text("tray-no-sites", &[]))]
        } else {
            sites
                .into_iter()
                .map(|origin| MenuEntry::Action {
                    label: i18n::text("tray-revoke", &[("origin", origin.as_str().into())]),
                    id: Command::Revoke(origin).id(),
                })
                .collect()
        };
        let mut menu = vec![
            MenuEntry::Label(i18n::text(
                "tray-version",
                &[("version", (&self.version).into())],
            )),
            MenuEntry::Label(i18n::text("tray-listening", &[("url", (&self.url).into())])),
            MenuEntry::Label(status.clone()),
            MenuEntry::Separator,
            MenuEntry::Check {
                id: Command::TogglePause.id(),
                label: i18n::text("tray-pause", &[]),
                checked: paused,
            },
            MenuEntry::Submenu {
                label: i18n::text("tray-sites", &[]),
                entries: site_entries,
            },
            MenuEntry::Submenu {
                label: i18n::text("tray-tokens", &[]),
                entries: self.token_entries(),
            },
        ];
        if let Some(folder) = &self.folder {
            menu.push(MenuEntry::Action {
                id: Command::OpenFolder.id(),
                label: i18n::text(
                    "tray-open-folder",
                    &[("folder", folder.display().to_string().as_str().into())],
                ),
            });
        }
        menu.push(MenuEntry::Separator);
        menu.push(MenuEntry::Action {
            id: Command::Quit.id(),
            label: i18n::text("tray-quit", &[]),
        });
        TrayView {
            icon: self.icon_state(),
            tooltip: i18n::text(
                "tray-tooltip",
                &[
                    ("version", (&self.version).into()),
                    ("status", (&status).into()),
                ],
            ),
            menu,
        }
    }

    /// Carry out the menu item with this id.
    pub fn activate(&self, id: &str) -> Outcome {
        let Some(command) = Command::from_id(id) else {
            return Outcome::Unknown(id.to_string());
        };
        match command {
            Command::TogglePause => {
                if self.state.consent.is_paused() {
                    self.state.consent.set_paused(false);
                    tracing::info!("signing resumed from the tray");
                    Outcome::Resumed
                } else {
                    self.state.consent.set_paused(true);
                    tracing::info!("signing paused from the tray: tokens logged out");
                    let backend = self.state.backend.clone();
                    // C_Logout can block behind a signature in progress: not on the UI thread.
                    let logout = std::thread::spawn(move || backend.logout_all());
                    Outcome::Paused { logout }
                }
            }
            Command::Revoke(origin) => {
                let was_remembered = self.state.consent.revoke(&origin);
                tracing::info!(origin = %origin, "always-allow revoked from the tray");
                Outcome::Revoked {
                    origin,
                    was_remembered,
                }
            }
            Command::OpenFolder => match &self.folder {
                Some(folder) => match (self.open)(folder) {
                    Ok(()) => Outcome::Opened(folder.clone()),
                    Err(e) => {
                        tracing::warn!(folder = %folder.display(), error = %e, "cannot open the folder");
                        Outcome::OpenFailed(e.to_string())
                    }
                },
                None => Outcome::Unknown(id.to_string()),
            },
            Command::Quit => {
                tracing::info!("quit from the tray");
                (self.quit)();
                Outcome::QuitRequested
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, CertificateObject, SignRequest};
    use crate::consent::{Caller, ConsentRequest, ConsentUi, Decision};
    use crate::error::{AgentError, Result};
    use keyport_protocol::{ErrorReason, InfoResult, SlotInfo, TokenInfo};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A backend that only counts logouts.
    #[derive(Default)]
    struct CountingBackend {
        logouts: AtomicUsize,
    }

    fn nothing<T>() -> Result<T> {
        Err(AgentError::new(ErrorReason::Internal))
    }

    impl Backend for CountingBackend {
        fn info(&self, _: &crate::allowlist::AllowedModule) -> Result<InfoResult> {
            nothing()
        }
        fn slots(&self, _: &crate::allowlist::AllowedModule, _: bool) -> Result<Vec<SlotInfo>> {
            nothing()
        }
        fn token(&self, _: &crate::allowlist::AllowedModule, _: u64) -> Result<TokenInfo> {
            nothing()
        }
        fn certificates(
            &self,
            _: &crate::allowlist::AllowedModule,
            _: u64,
        ) -> Result<Vec<CertificateObject>> {
            nothing()
        }
        fn certificate(
            &self,
            _: &crate::allowlist::AllowedModule,
            _: u64,
            _: &[u8],
        ) -> Result<CertificateObject> {
            nothing()
        }
        fn sign(
            &self,
            _: &crate::allowlist::AllowedModule,
            _: &SignRequest<'_>,
        ) -> Result<Vec<Vec<u8>>> {
            nothing()
        }
        fn key_ids(&self, _: &crate::allowlist::AllowedModule, _: u64) -> Result<Vec<Vec<u8>>> {
            nothing()
        }
        fn slot_presence(
            &self,
            _: &crate::allowlist::AllowedModule,
        ) -> Result<Vec<crate::backend::SlotPresence>> {
            nothing()
        }
        fn wait_slot_event(
            &self,
            _: &crate::allowlist::AllowedModule,
            _: Duration,
        ) -> Result<crate::backend::SlotWait> {
            nothing()
        }
        fn logout_all(&self) {
            self.logouts.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A prompt that waits until told to answer.
    struct Gate(tokio::sync::Semaphore);

    #[async_trait::async_trait]
    impl ConsentUi for Gate {
        async fn ask(
            &self,
            _: &ConsentRequest,
            _: Duration,
        ) -> std::result::Result<Option<Decision>, String> {
            // One permit answers one prompt.
            if let Ok(permit) = self.0.acquire().await {
                permit.forget();
            }
            Ok(Some(Decision::Allow))
        }
    }

    fn o(origin: &str) -> crate::origin::Origin {
        crate::origin::Origin::parse(origin).unwrap()
    }

    struct Fixture {
        model: TrayModel,
        state: Arc<Agent>,
        backend: Arc<CountingBackend>,
        quits: Arc<AtomicUsize>,
        opened: Arc<Mutex<Vec<PathBuf>>>,
        gate: Arc<Gate>,
    }

    fn fixture(sites_file: Option<PathBuf>) -> Fixture {
        let backend = Arc::new(CountingBackend::default());
        let gate = Arc::new(Gate(tokio::sync::Semaphore::new(0)));
        let config = crate::config::Config {
            consent_timeout: Duration::from_secs(30),
            state_file: sites_file,
            ..Default::default()
        };
        let state = Agent::new(
            &config,
            backend.clone(),
            Some(gate.clone() as Arc<dyn ConsentUi>),
        );
        let quits = Arc::new(AtomicUsize::new(0));
        let opened = Arc::new(Mutex::new(Vec::new()));
        let (q, o) = (quits.clone(), opened.clone());
        let model = TrayModel::new(
            state.clone(),
            "ws://127.0.0.1:8789".into(),
            Some(PathBuf::from("/home/p/.local/state/keyport")),
            move || {
                q.fetch_add(1, Ordering::SeqCst);
            },
            move |p: &Path| {
                o.lock().unwrap().push(p.to_path_buf());
                Ok(())
            },
        );
        Fixture {
            model,
            state,
            backend,
            quits,
            opened,
            gate,
        }
    }

    fn labels(entries: &[MenuEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                MenuEntry::Label(l) => l.clone(),
                MenuEntry::Check { label, checked, .. } => format!("{label} [{checked}]"),
                MenuEntry::Action { label, .. } => label.clone(),
                MenuEntry::Submenu { label, entries } => {
                    format!("{label} > {}", labels(entries).join(" | "))
                }
                MenuEntry::Separator => "---".into(),
            })
            .collect()
    }

    fn request() -> ConsentRequest {
        ConsentRequest {
            caller: Caller::Origin(o("https://a.example")),
            subject: "CN=A".into(),
            issuer: "CN=A".into(),
            algorithm: "SHA-256 with RSA".into(),
            digest_fingerprint: "00".into(),
            count: 1,
        }
    }

    #[test]
    fn the_menu_lists_the_tokens_present_and_redraws_when_they_change() {
        use crate::backend::{SlotPresence, TokenIdentity};
        let f = fixture(None);
        let redraws = Arc::new(AtomicUsize::new(0));
        let r = redraws.clone();
        f.model.on_change(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let token = |label: &str| {
            Some(TokenIdentity {
                label: label.into(),
                serial: "1".into(),
            })
        };
        f.state.tokens.set(
            "/usr/lib/softhsm/libsofthsm2.so",
            &[
                SlotPresence {
                    slot_id: 7,
                    token: token("keyport-demo"),
                },
                SlotPresence {
                    slot_id: 8,
                    token: None,
                },
                SlotPresence {
                    slot_id: 9,
                    token: token(""),
                },
            ],
        );
        assert!(redraws.load(Ordering::SeqCst) >= 1);
        let menu = labels(&f.model.view().menu);
        assert!(
            menu.contains(
                &"Tokens > keyport-demo (libsofthsm2.so, slot 7) | (no label) (libsofthsm2.so, slot 9)"
                    .to_string()
            ),
            "{menu:?}"
        );
        f.state.tokens.set("/usr/lib/softhsm/libsofthsm2.so", &[]);
        assert!(labels(&f.model.view().menu).contains(&"Tokens > No token inserted".to_string()));
    }

    #[test]
    fn the_menu_shows_address_version_state_and_actions() {
        let f = fixture(None);
        let view = f.model.view();
        assert_eq!(view.icon, IconState::Idle);
        assert_eq!(
            labels(&view.menu),
            [
                format!("Keyport {}", env!("CARGO_PKG_VERSION")),
                "Listening on ws://127.0.0.1:8789".into(),
                "Ready".into(),
                "---".into(),
                "Pause signing [false]".into(),
                "Always-allowed sites > No site is always allowed".into(),
                "Tokens > No token inserted".into(),
                "Open settings and log folder (/home/p/.local/state/keyport)".into(),
                "---".into(),
                "Quit Keyport".into(),
            ]
        );
        assert!(view.tooltip.contains("Ready"));
    }

    #[test]
    fn pause_toggles_refuses_and_logs_out() {
        let f = fixture(None);
        match f.model.activate("pause") {
            Outcome::Paused { logout } => logout.join().unwrap(),
            other => panic!("{other:?}"),
        }
        assert!(f.state.consent.is_paused());
        assert_eq!(f.backend.logouts.load(Ordering::SeqCst), 1);
        let view = f.model.view();
        assert_eq!(view.icon, IconState::Paused);
        assert!(labels(&view.menu).contains(&"Pause signing [true]".to_string()));
        assert!(view.tooltip.contains("paused"));
        // While paused, every signature is refused at once, even a trusted one's.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(
                f.state
                    .consent
                    .authorize(&Caller::Local { trusted: true }, &request()),
            )
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::SigningPaused);

        assert!(matches!(f.model.activate("pause"), Outcome::Resumed));
        assert!(!f.state.consent.is_paused());
        assert_eq!(f.model.view().icon, IconState::Idle);
        assert_eq!(f.backend.logouts.load(Ordering::SeqCst), 1);
    }

    /// Spawns a request from `origin` and returns once it waits for the person's answer.
    fn spawn_waiting(
        f: &Fixture,
        rt: &tokio::runtime::Runtime,
        origin: &str,
    ) -> tokio::task::JoinHandle<crate::error::Result<()>> {
        let before = f.state.consent.pending();
        let state = f.state.clone();
        let caller = Caller::Origin(o(origin));
        let waiting = rt.spawn(async move { state.consent.authorize(&caller, &request()).await });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while f.state.consent.pending() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the request never waited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        waiting
    }

    #[test]
    fn the_icon_shows_a_request_awaiting_consent() {
        let f = fixture(None);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let waiting = spawn_waiting(&f, &rt, "https://a.example");
        let view = f.model.view();
        assert_eq!(view.icon, IconState::AwaitingConsent);
        assert!(labels(&view.menu).contains(&"1 signature request waits for your answer".into()));
        f.gate.0.add_permits(1);
        assert!(rt.block_on(waiting).unwrap().is_ok());
        assert_eq!(f.model.view().icon, IconState::Idle);

        // Paused wins over a waiting request: its prompt is withdrawn and it is refused.
        let waiting = spawn_waiting(&f, &rt, "https://a.example");
        f.state.consent.set_paused(true);
        assert_eq!(f.model.icon_state(), IconState::Paused);
        let err = rt.block_on(waiting).unwrap().unwrap_err();
        assert_eq!(err.reason, ErrorReason::SigningPaused);
        assert_eq!(f.state.consent.pending(), 0);
        f.state.consent.set_paused(false);
        assert_eq!(f.model.view().icon, IconState::Idle);
    }

    #[test]
    fn remembered_sites_are_listed_and_revocable_and_the_file_follows() {
        let dir = std::env::temp_dir().join(format!("keyport-tray-{}", std::process::id()));
        let file = dir.join("state.json");
        let f = fixture(Some(file.clone()));
        f.state.consent.remembered.add(&o("https://a.example"));
        f.state.consent.remembered.add(&o("https://b.example"));
        let view = f.model.view();
        let sites = view
            .menu
            .iter()
            .find_map(|e| match e {
                MenuEntry::Submenu { entries, .. } => Some(entries.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            sites,
            [
                MenuEntry::Action {
                    id: "revoke:https://a.example".into(),
                    label: "Revoke https://a.example".into()
                },
                MenuEntry::Action {
                    id: "revoke:https://b.example".into(),
                    label: "Revoke https://b.example".into()
                },
            ]
        );
        match f.model.activate("revoke:https://a.example") {
            Outcome::Revoked {
                origin,
                was_remembered,
            } => {
                assert_eq!(origin, "https://a.example");
                assert!(was_remembered);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.state.consent.remembered.list(), ["https://b.example"]);
        // The revocation survives a restart.
        assert_eq!(
            crate::consent::RememberedSites::load(Some(file.clone())).list(),
            ["https://b.example"]
        );
        assert!(matches!(
            f.model.activate("revoke:https://a.example"),
            Outcome::Revoked {
                was_remembered: false,
                ..
            }
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn quit_and_open_call_their_hooks_and_unknown_ids_do_nothing() {
        let f = fixture(None);
        assert!(matches!(f.model.activate("quit"), Outcome::QuitRequested));
        assert_eq!(f.quits.load(Ordering::SeqCst), 1);
        assert!(matches!(
            f.model.activate("open-folder"),
            Outcome::Opened(_)
        ));
        assert_eq!(
            *f.opened.lock().unwrap(),
            [PathBuf::from("/home/p/.local/state/keyport")]
        );
        for bad in ["", "revoke:", "Pause", "quit "] {
            assert!(
                matches!(f.model.activate(bad), Outcome::Unknown(_)),
                "{bad}"
            );
        }
        assert_eq!(f.quits.load(Ordering::SeqCst), 1);
        assert!(!f.state.consent.is_paused());
    }

    #[test]
    fn ids_round_trip() {
        for c in [
            Command::TogglePause,
            Command::Revoke("https://a.example:8443".into()),
            Command::OpenFolder,
            Command::Quit,
        ] {
            assert_eq!(Command::from_id(&c.id()), Some(c));
        }
    }
}
