//! [`ConsentPolicy`]: who may sign without a prompt, asking the person otherwise, and the
//! bounds on prompts waiting for an answer.

use super::{Caller, ConsentRequest, ConsentUi, Decision, PinAnswer, PinUi, RememberedSites};
use crate::error::{AgentError, Result};
use crate::origin::Origin;
use keyport_protocol::ErrorReason;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How many signatures may wait for the person's answer at once, per origin and in all (more
/// get CONSENT_BUSY). The defaults here are the configuration's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    pub per_origin: usize,
    pub total: usize,
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits {
            per_origin: 2,
            total: 8,
        }
    }
}

pub struct ConsentPolicy {
    trusted: HashSet<Origin>,
    ui: Option<Arc<dyn ConsentUi>>,
    /// The agent's own PIN prompt, if it has one.
    pin_ui: Option<Arc<dyn PinUi>>,
    timeout: Duration,
    paused: AtomicBool,
    /// Wakes the prompts that are up when signing is paused, so they are withdrawn at once.
    pause_signal: tokio::sync::Notify,
    pub remembered: RememberedSites,
    pending: Mutex<HashMap<String, usize>>,
    limits: PendingLimits,
    /// Told when what the tray shows changes: pending prompts, pause, remembered sites.
    observer: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// How this agent asks, or why it cannot (the start-up note): a refusal quotes it.
    prompt_note: OnceLock<String>,
    /// Whether a refusal for want of a prompt was logged: logged once, not once per request.
    refusal_logged: AtomicBool,
}

/// Releases a pending-prompt slot when dropped (also when the request is abandoned).
struct PendingSlot<'a> {
    policy: &'a ConsentPolicy,
    origin: String,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        {
            let mut pending = self
                .policy
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = pending.get_mut(&self.origin) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&self.origin);
                }
            }
        }
        self.policy.changed();
    }
}

impl ConsentPolicy {
    pub fn new(
        trusted: impl IntoIterator<Item = Origin>,
        ui: Option<Arc<dyn ConsentUi>>,
        timeout: Duration,
        remembered: RememberedSites,
    ) -> Self {
        ConsentPolicy {
            trusted: trusted.into_iter().collect(),
            ui,
            pin_ui: None,
            timeout,
            paused: AtomicBool::new(false),
            pause_signal: tokio::sync::Notify::new(),
            remembered,
            pending: Mutex::new(HashMap::new()),
            limits: PendingLimits::default(),
            observer: OnceLock::new(),
            prompt_note: OnceLock::new(),
            refusal_logged: AtomicBool::new(false),
        }
    }

    /// Say how this agent asks, or why it cannot (the shell's start-up note), so that a
    /// CONSENT_UNAVAILABLE refusal can tell the page what would make it work. Once; a second
    /// call is ignored.
    pub fn set_prompt_note(&self, note: impl Into<String>) {
        let _ = self.prompt_note.set(note.into());
    }

    /// CONSENT_UNAVAILABLE for `caller`, saying why (`why`: the prompt's own failure, None: no
    /// prompt at all) and what would make it work; the first such refusal is also logged.
    fn unavailable(&self, caller: &Caller, why: Option<&str>) -> AgentError {
        let note = self.prompt_note.get().map(String::as_str);
        let cause = match (why, note) {
            (Some(why), Some(note)) => format!("{why} (this agent: {note})"),
            (Some(why), None) => why.to_string(),
            (None, Some(note)) => note.to_string(),
            (None, None) => "no consent prompt is available".to_string(),
        };
        let trust = match caller {
            Caller::Origin(o) => format!("--trust-origin {o}"),
            Caller::Local { .. } => "--trust-origin ORIGIN (for a page)".to_string(),
        };
        let message = format!(
            "The agent cannot ask the person for consent: {cause}. A trusted origin signs \
             without asking (start the agent with {trust}); otherwise run it where a \
             notification server or a usable pinentry can show the prompt."
        );
        if !self.refusal_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "refusing to sign (CONSENT_UNAVAILABLE, logged once): {cause}; a trusted origin \
                 signs without asking ({trust})"
            );
        }
        AgentError::with_message(ErrorReason::ConsentUnavailable, message)
    }

    /// Call `f` whenever pending prompts, pause or remembered sites change (the tray redraws
    /// then, instead of polling). One observer; a second call is ignored.
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(f));
    }

    /// Forget an "always allow" answer; the site is prompted again. True if it was remembered.
    pub fn revoke(&self, origin: &str) -> bool {
        let removed = self.remembered.revoke(origin);
        if removed {
            self.changed();
        }
        removed
    }

    fn changed(&self) {
        if let Some(f) = self.observer.get() {
            f();
        }
    }

    /// Let the agent ask for PINs itself, with `pin_ui`.
    pub fn with_pin_ui(mut self, pin_ui: Option<Arc<dyn PinUi>>) -> Self {
        self.pin_ui = pin_ui;
        self
    }

    /// Whether the agent can ask the person for a PIN.
    pub fn has_pin_ui(&self) -> bool {
        self.pin_ui.is_some()
    }

    /// Whether the agent can ask the person for consent.
    pub fn has_consent_ui(&self) -> bool {
        self.ui.is_some()
    }

    pub fn with_pending_limits(mut self, limits: PendingLimits) -> Self {
        self.limits = PendingLimits {
            per_origin: limits.per_origin.max(1),
            total: limits.total.max(1),
        };
        self
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        if paused {
            self.pause_signal.notify_waiters();
        }
        self.changed();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Requests now waiting for the person's answer.
    pub fn pending(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    fn reserve(&self, origin: &str) -> Result<PendingSlot<'_>> {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let total: usize = pending.values().sum();
            let mine = pending.get(origin).copied().unwrap_or(0);
            if total >= self.limits.total || mine >= self.limits.per_origin {
                return Err(AgentError::new(ErrorReason::ConsentBusy));
            }
            pending.insert(origin.to_string(), mine + 1);
        }
        self.changed();
        Ok(PendingSlot {
            policy: self,
            origin: origin.to_string(),
        })
    }

    /// Whether `caller` may sign without a prompt (trusted, or remembered). SIGNING_PAUSED when
    /// paused. Signing handlers use it to skip building a prompt they will not show.
    pub fn pre_approved(&self, caller: &Caller) -> Result<bool> {
        if self.is_paused() {
            return Err(AgentError::new(ErrorReason::SigningPaused));
        }
        Ok(match caller {
            Caller::Local { trusted } => *trusted,
            Caller::Origin(o) => self.trusted.contains(o) || self.remembered.contains(o),
        })
    }

    /// Decide whether `caller` may make the signature described by `request`.
    pub async fn authorize(&self, caller: &Caller, request: &ConsentRequest) -> Result<()> {
        if self.pre_approved(caller)? {
            return Ok(());
        }
        let Some(ui) = &self.ui else {
            return Err(self.unavailable(caller, None));
        };
        let answer = self
            .prompting(caller, |timeout| ui.ask(request, timeout))
            .await?;
        match answer.unwrap_or(Ok(None)) {
            Ok(Some(Decision::Allow)) => Ok(()),
            Ok(Some(Decision::AllowAlways)) => {
                if let Caller::Origin(o) = caller {
                    self.remembered.add(o);
                    self.changed();
                    tracing::info!(origin = %o, "site remembered as always allowed");
                }
                Ok(())
            }
            Ok(Some(Decision::Deny)) => Err(AgentError::new(ErrorReason::ConsentDenied)),
            Ok(None) => Err(AgentError::new(ErrorReason::ConsentTimeout)),
            Err(why) => Err(self.unavailable(caller, Some(&why))),
        }
    }

    /// Ask the person for the PIN of the signature `request` describes, in the agent's own
    /// prompt, which also names who asks and what (so it is the consent too; a pre-approved
    /// caller still gets it, since the token needs the PIN). `error`: why the last PIN failed.
    /// Bounded like consent prompts (pending limits, pause, timeout). Cancel → CONSENT_DENIED;
    /// no PIN prompt → PIN_ENTRY_UNAVAILABLE.
    pub async fn ask_pin(
        &self,
        caller: &Caller,
        request: &ConsentRequest,
        error: Option<&str>,
    ) -> Result<keyport_protocol::Pin> {
        if self.is_paused() {
            return Err(AgentError::new(ErrorReason::SigningPaused));
        }
        let Some(pin_ui) = &self.pin_ui else {
            return Err(AgentError::new(ErrorReason::PinEntryUnavailable));
        };
        let answer = self
            .prompting(caller, |timeout| pin_ui.ask_pin(request, error, timeout))
            .await?;
        match answer.unwrap_or(Ok(PinAnswer::TimedOut)) {
            Ok(PinAnswer::Pin(pin)) => Ok(pin),
            Ok(PinAnswer::Cancelled) => Err(AgentError::new(ErrorReason::ConsentDenied)),
            Ok(PinAnswer::TimedOut) => Err(AgentError::new(ErrorReason::ConsentTimeout)),
            Err(why) => {
                tracing::warn!(reason = %why, "cannot show the PIN prompt");
                Err(AgentError::new(ErrorReason::PinEntryUnavailable))
            }
        }
    }

    /// Tell the person to type the PIN on the reader (see [`ConsentUi::pin_pad_notice`]).
    pub async fn pin_pad_notice(&self, request: &ConsentRequest) -> Option<Box<dyn Send>> {
        match &self.ui {
            Some(ui) => ui.pin_pad_notice(request).await,
            None => None,
        }
    }

    /// Run the prompt `ask(timeout)` for `caller` within the pending-prompt limits: refused at
    /// once when paused (and withdrawn if signing is paused while it is up); `None` if it
    /// does not finish a little after the timeout it was given.
    async fn prompting<'a, T, F, Fut>(&'a self, caller: &Caller, ask: F) -> Result<Option<T>>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: std::future::Future<Output = T> + 'a,
    {
        let origin = match caller {
            Caller::Origin(o) => o.as_str(),
            Caller::Local { .. } => "",
        };
        let _slot = self.reserve(origin)?;
        // Pausing while the prompt is up refuses at once; dropping the prompt's future
        // withdraws it. Registered before the last check so a pause in between is not missed.
        let paused = self.pause_signal.notified();
        tokio::pin!(paused);
        paused.as_mut().enable();
        if self.is_paused() {
            return Err(AgentError::new(ErrorReason::SigningPaused));
        }
        let ask = tokio::time::timeout(self.timeout + Duration::from_secs(2), ask(self.timeout));
        tokio::select! {
            answer = ask => Ok(answer.ok()),
            _ = &mut paused => Err(AgentError::new(ErrorReason::SigningPaused)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::*;

    struct Scripted(Result<Option<Decision>, String>, Duration);

    #[async_trait::async_trait]
    impl ConsentUi for Scripted {
        async fn ask(&self, _: &ConsentRequest, _: Duration) -> Result<Option<Decision>, String> {
            tokio::time::sleep(self.1).await;
            self.0.clone()
        }
    }

    /// A prompt that [`Held`] put up; it stays up until the test answers it or drops `answer`.
    struct Prompt {
        caller: Caller,
        answer: tokio::sync::oneshot::Sender<Decision>,
    }

    /// A UI that hands each prompt to the test the moment it goes up, and answers only when the
    /// test does: the test waits for the prompt instead of sleeping until it is probably up.
    struct Held(tokio::sync::mpsc::UnboundedSender<Prompt>);

    #[async_trait::async_trait]
    impl ConsentUi for Held {
        async fn ask(&self, r: &ConsentRequest, _: Duration) -> Result<Option<Decision>, String> {
            let (answer, answered) = tokio::sync::oneshot::channel();
            let prompt = Prompt {
                caller: r.caller.clone(),
                answer,
            };
            self.0
                .send(prompt)
                .map_err(|_| "the test is gone".to_string())?;
            // Dropping this future (the prompt is withdrawn) drops `answered`: the test sees
            // `answer.is_closed()`.
            Ok(answered.await.ok())
        }
    }

    /// A policy asking through [`Held`] (with a timeout no answer will race), and its prompts.
    fn held(
        limits: PendingLimits,
    ) -> (
        Arc<ConsentPolicy>,
        tokio::sync::mpsc::UnboundedReceiver<Prompt>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let p = ConsentPolicy::new(
            Vec::<Origin>::new(),
            Some(Arc::new(Held(tx)) as Arc<dyn ConsentUi>),
            Duration::from_secs(60),
            RememberedSites::default(),
        )
        .with_pending_limits(limits);
        (Arc::new(p), rx)
    }

    /// The next prompt to go up (failing, not hanging, if none does).
    async fn next_prompt(prompts: &mut tokio::sync::mpsc::UnboundedReceiver<Prompt>) -> Prompt {
        tokio::time::timeout(Duration::from_secs(10), prompts.recv())
            .await
            .expect("no prompt went up within 10 s")
            .expect("the UI is gone")
    }

    fn request() -> ConsentRequest {
        ConsentRequest {
            caller: origin("https://a.example"),
            subject: "CN=Alice".into(),
            issuer: "CN=CA".into(),
            algorithm: "SHA-256 with RSA".into(),
            digest_fingerprint: "00".into(),
            count: 1,
        }
    }

    fn policy(ui: Option<Scripted>) -> ConsentPolicy {
        ConsentPolicy::new(
            [Origin::parse("https://trusted.example").unwrap()],
            ui.map(|u| Arc::new(u) as Arc<dyn ConsentUi>),
            Duration::from_millis(200),
            RememberedSites::default(),
        )
    }

    fn origin(o: &str) -> Caller {
        Caller::Origin(Origin::parse(o).unwrap())
    }

    #[tokio::test]
    async fn trusted_signs_without_ui_and_others_need_one() {
        let p = policy(None);
        assert!(p
            .authorize(&origin("https://trusted.example"), &request())
            .await
            .is_ok());
        let err = p
            .authorize(&origin("https://a.example"), &request())
            .await
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ConsentUnavailable);
        let err = p
            .authorize(&Caller::Local { trusted: false }, &request())
            .await
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ConsentUnavailable);
        assert!(p
            .authorize(&Caller::Local { trusted: true }, &request())
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn answers_map_to_outcomes() {
        let cases = [
            (Ok(Some(Decision::Allow)), None),
            (Ok(Some(Decision::Deny)), Some(ErrorReason::ConsentDenied)),
            (Ok(None), Some(ErrorReason::ConsentTimeout)),
            (
                Err("no bus".to_string()),
                Some(ErrorReason::ConsentUnavailable),
            ),
        ];
        for (answer, want) in cases {
            let p = policy(Some(Scripted(answer, Duration::ZERO)));
            let got = p
                .authorize(&origin("https://a.example"), &request())
                .await
                .err()
                .map(|e| e.reason);
            assert_eq!(got, want);
        }
    }

    #[tokio::test]
    async fn a_ui_that_hangs_is_a_timeout() {
        let p = policy(Some(Scripted(
            Ok(Some(Decision::Allow)),
            Duration::from_secs(3600),
        )));
        let started = std::time::Instant::now();
        let err = p
            .authorize(&origin("https://a.example"), &request())
            .await
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ConsentTimeout);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(p.pending(), 0);
    }

    #[tokio::test]
    async fn always_allow_is_remembered_and_revocable() {
        let p = policy(Some(Scripted(
            Ok(Some(Decision::AllowAlways)),
            Duration::ZERO,
        )));
        p.authorize(&origin("https://a.example"), &request())
            .await
            .unwrap();
        assert_eq!(p.remembered.list(), ["https://a.example"]);
        assert!(p.remembered.revoke("https://a.example"));
        assert!(p.remembered.list().is_empty());
    }

    #[tokio::test]
    async fn pausing_while_a_prompt_is_up_refuses_it_at_once_and_drops_the_prompt() {
        let (p, mut prompts) = held(PendingLimits::default());
        let p2 = p.clone();
        let waiting =
            tokio::spawn(
                async move { p2.authorize(&origin("https://a.example"), &request()).await },
            );
        let prompt = next_prompt(&mut prompts).await;
        assert_eq!(p.pending(), 1);
        p.set_paused(true);
        let err = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::SigningPaused);
        assert!(prompt.answer.is_closed(), "the prompt was not withdrawn");
        assert_eq!(p.pending(), 0);
    }

    #[tokio::test]
    async fn the_observer_hears_of_prompts_pause_and_remembered_sites() {
        let p = policy(Some(Scripted(
            Ok(Some(Decision::AllowAlways)),
            Duration::ZERO,
        )));
        let heard = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = heard.clone();
        p.on_change(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        let count = || heard.load(Ordering::SeqCst);
        // A prompt goes up and comes down, and the site is remembered: three changes.
        p.authorize(&origin("https://a.example"), &request())
            .await
            .unwrap();
        assert_eq!(count(), 3);
        // Remembered now: no prompt, nothing changes.
        p.authorize(&origin("https://a.example"), &request())
            .await
            .unwrap();
        assert_eq!(count(), 3);
        p.set_paused(true);
        assert_eq!(count(), 4);
        p.set_paused(false);
        assert_eq!(count(), 5);
        assert!(p.revoke("https://a.example"));
        assert_eq!(count(), 6);
        assert!(!p.revoke("https://a.example"));
        assert_eq!(count(), 6);
    }

    #[tokio::test]
    async fn pause_refuses_everyone() {
        let p = policy(None);
        p.set_paused(true);
        let err = p
            .authorize(&origin("https://trusted.example"), &request())
            .await
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::SigningPaused);
    }

    /// A PIN window that stays up until the test lets it go.
    struct HeldPin(tokio::sync::Semaphore);

    #[async_trait::async_trait]
    impl PinUi for HeldPin {
        async fn ask_pin(
            &self,
            _: &ConsentRequest,
            _: Option<&str>,
            _: Duration,
        ) -> std::result::Result<PinAnswer, String> {
            let _ = self.0.acquire().await;
            Ok(PinAnswer::Cancelled)
        }
    }

    #[tokio::test]
    async fn pin_windows_count_against_the_same_pending_bound() {
        let pin = Arc::new(HeldPin(tokio::sync::Semaphore::new(0)));
        let p = Arc::new(
            ConsentPolicy::new(
                Vec::<Origin>::new(),
                None,
                Duration::from_secs(60),
                RememberedSites::default(),
            )
            .with_pin_ui(Some(pin.clone() as Arc<dyn PinUi>))
            .with_pending_limits(PendingLimits {
                per_origin: 2,
                total: 8,
            }),
        );
        let a = origin("https://a.example");
        let mut up = Vec::new();
        for _ in 0..2 {
            let (p, a) = (p.clone(), a.clone());
            up.push(tokio::spawn(async move {
                p.ask_pin(&a, &request(), None).await
            }));
        }
        // Both windows are up (held), then a third from the same page is refused at once.
        tokio::time::timeout(Duration::from_secs(10), async {
            while p.pending() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("two PIN windows up");
        let err = tokio::time::timeout(Duration::from_secs(10), p.ask_pin(&a, &request(), None))
            .await
            .expect("refused at once")
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ConsentBusy);
        pin.0.add_permits(2);
        for w in up {
            assert_eq!(
                w.await.unwrap().unwrap_err().reason,
                ErrorReason::ConsentDenied
            );
        }
        assert_eq!(p.pending(), 0);
    }

    #[tokio::test]
    async fn pending_prompts_are_bounded_per_origin() {
        let (p, mut prompts) = held(PendingLimits {
            per_origin: 1,
            total: 8,
        });
        let p2 = p.clone();
        let first =
            tokio::spawn(
                async move { p2.authorize(&origin("https://a.example"), &request()).await },
            );
        let first_prompt = next_prompt(&mut prompts).await;
        assert_eq!(first_prompt.caller, origin("https://a.example"));
        // Refused at once (a prompt would wait for an answer that never comes).
        let (a, r) = (origin("https://a.example"), request());
        let err = tokio::time::timeout(Duration::from_secs(10), p.authorize(&a, &r))
            .await
            .expect("refused at once")
            .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ConsentBusy);
        // Another site is not starved by the first one's prompt (and the refused request put
        // up none: the next prompt is the other site's).
        let p2 = p.clone();
        let other = tokio::spawn(async move {
            let b = origin("https://b.example");
            let request = ConsentRequest {
                caller: b.clone(),
                ..request()
            };
            p2.authorize(&b, &request).await
        });
        let other_prompt = next_prompt(&mut prompts).await;
        assert_eq!(other_prompt.caller, origin("https://b.example"));
        other_prompt.answer.send(Decision::Allow).unwrap();
        assert!(other.await.unwrap().is_ok());
        first_prompt.answer.send(Decision::Allow).unwrap();
        assert!(first.await.unwrap().is_ok());
        assert_eq!(p.pending(), 0);
        assert!(prompts.try_recv().is_err(), "an unexpected prompt");
    }

    #[test]
    fn remembered_sites_persist_in_a_file_only_the_person_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("person/state.json");
        let sites = RememberedSites::load(Some(file.clone()));
        sites.add(&Origin::parse("https://a.example").unwrap());
        sites.add(&Origin::parse("https://b.example").unwrap());
        assert_eq!(
            RememberedSites::load(Some(file.clone())).list(),
            ["https://a.example", "https://b.example"]
        );
        assert!(sites.revoke("https://a.example"));
        assert_eq!(
            RememberedSites::load(Some(file.clone())).list(),
            ["https://b.example"]
        );
        // Replaced in place: no temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(format!("{:o}", mode & 0o777), "600");
        }
    }

    #[test]
    fn a_save_that_fails_keeps_the_sites_in_memory_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename over it fails.
        let file = dir.path().join("state.json");
        std::fs::create_dir(&file).unwrap();
        std::fs::write(file.join("keep"), "").unwrap();
        let sites = RememberedSites::load(Some(file.clone()));
        sites.add(&Origin::parse("https://a.example").unwrap());
        assert_eq!(sites.list(), ["https://a.example"]);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        assert!(file.join("keep").exists());
    }

    #[test]
    fn fingerprint_is_short() {
        assert_eq!(digest_fingerprint(&[0xAB; 32]), "ABABABAB ABABABAB");
    }
}
