//! The consent prompt as a desktop notification with three buttons (freedesktop.org
//! notifications over the D-Bus session bus, sent with notify-rust).
//!
//! One prompt, step by step:
//! 1. connect to the session bus (none → `Err`, i.e. CONSENT_UNAVAILABLE);
//! 2. ask the notification server for its capabilities (no server → `Err`; a server that cannot
//!    show buttons, no `actions` capability → `Err`);
//! 3. subscribe to `ActionInvoked` / `NotificationClosed` from the server's unique bus name only
//!    (another program on the bus cannot answer in the person's place), *before* sending the
//!    notification, so a fast answer is not lost;
//! 4. show the notification (notify-rust), wait for its answer or the timeout;
//! 5. no answer in time: withdraw it (`CloseNotification`) and answer `Ok(None)`. If the request is
//!    abandoned while the prompt is up (the page went away), the prompt is withdrawn too.
//!
//! notify-rust's own `wait_for_action` has no timeout and subscribes only after the notification
//! is shown; this module does its own waiting on the same D-Bus signals instead.

use crate::consent::text::{pin_pad_instruction, timeout_line, ConsentText};
use crate::consent::{Caller, ConsentRequest, ConsentUi, Decision};
use crate::i18n;
use std::time::Duration;

#[cfg(all(unix, not(target_os = "macos")))]
const BUS_NAME: &str = "org.freedesktop.Notifications";
#[cfg(all(unix, not(target_os = "macos")))]
const PATH: &str = "/org/freedesktop/Notifications";
#[cfg(all(unix, not(target_os = "macos")))]
const INTERFACE: &str = "org.freedesktop.Notifications";

/// Action keys sent to the notification server, with their button labels.
pub const ACTION_ALLOW: &str = "allow";
pub const ACTION_ALWAYS: &str = "always";
pub const ACTION_DENY: &str = "deny";

/// The text of one prompt. Built from the request only: it never sees the PIN or the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptText {
    pub summary: String,
    pub body: String,
    /// (key, label) pairs, in the order shown.
    pub actions: Vec<(&'static str, String)>,
}

/// What the person sees: the request's text as [`ConsentText`] renders it (cleaned and capped
/// there), one line each. `markup`: the server renders body markup, so `<`, `>`, `&` are escaped
/// too (a certificate subject cannot inject formatting).
pub fn prompt_text(request: &ConsentRequest, timeout: Duration, markup: bool) -> PromptText {
    let text = ConsentText::new(request);
    let mut lines = vec![text.headline.as_str()];
    lines.extend(text.details());
    let last = timeout_line(timeout);
    lines.push(&last);
    let button = |id: &str| i18n::plain(&i18n::text(id, &[]));
    let mut actions = vec![(ACTION_ALLOW, button("button-allow"))];
    // "Always" only means something for a web origin (it is remembered per origin).
    if matches!(request.caller, Caller::Origin(_)) {
        actions.push((ACTION_ALWAYS, button("button-always")));
    }
    actions.push((ACTION_DENY, button("button-deny")));
    PromptText {
        summary: i18n::text(
            "notify-consent-summary",
            &[("caller", (&text.caller).into())],
        ),
        body: body(&lines, markup),
        actions,
    }
}

/// The body of a notification: `lines`, escaped for a server that renders markup. The fields'
/// caps keep it far below [`MAX_BODY`]; the cut is only a last bound.
fn body(lines: &[&str], markup: bool) -> String {
    let mut body = lines.join("\n");
    if markup {
        body = body
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
    }
    if body.len() > MAX_BODY {
        let mut end = MAX_BODY;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
    }
    body
}

/// The longest body sent.
pub const MAX_BODY: usize = 2000;

/// What an `ActionInvoked` key means. Only the three buttons allow anything; a click on the
/// notification's body ("default") or any other key is a refusal.
pub fn decision_for_action(key: &str, offered_always: bool) -> Decision {
    match key {
        ACTION_ALLOW => Decision::Allow,
        ACTION_ALWAYS if offered_always => Decision::AllowAlways,
        _ => Decision::Deny,
    }
}

/// The notice shown while a PIN-pad reader waits for the person (no buttons: they answer on the
/// reader): who asks, the certificate and the fingerprint, as [`ConsentText`] renders them.
pub fn pin_pad_text(request: &ConsentRequest, markup: bool) -> PromptText {
    let text = ConsentText::new(request);
    let instruction = pin_pad_instruction();
    let lines = [
        text.headline.as_str(),
        &text.certificate,
        &text.fingerprint,
        &instruction,
    ];
    PromptText {
        summary: i18n::text("notify-pin-pad-summary", &[]),
        body: body(&lines, markup),
        actions: Vec::new(),
    }
}

/// What a `NotificationClosed` without an action means (reason codes of the specification):
/// expired (1) is no answer; dismissed (2), closed by a call (3) or undefined (4) are a refusal.
pub fn decision_for_close(reason: u32) -> Option<Decision> {
    match reason {
        1 => None,
        _ => Some(Decision::Deny),
    }
}

/// Consent through a desktop notification with Allow / Always allow this site / Deny buttons.
#[derive(Debug, Default)]
pub struct NotifyConsent {
    _private: (),
}

impl NotifyConsent {
    pub fn new() -> Self {
        NotifyConsent { _private: () }
    }
}

#[async_trait::async_trait]
impl ConsentUi for NotifyConsent {
    async fn ask(
        &self,
        request: &ConsentRequest,
        timeout: Duration,
    ) -> Result<Option<Decision>, String> {
        imp::ask(request, timeout).await
    }

    async fn pin_pad_notice(&self, request: &ConsentRequest) -> Option<Box<dyn Send>> {
        imp::notice(request).await
    }
}

/// The notification server's capabilities (`actions` means it can ask), or why there is none
/// (for `keyport doctor`).
pub async fn capabilities() -> Result<Vec<String>, String> {
    imp::capabilities().await
}

#[cfg(all(unix, not(target_os = "macos")))]
mod imp {
    use super::*;
    use futures_util::StreamExt;
    use notify_rust::{Notification, Timeout, Urgency};
    use zbus::message::Type as MessageType;
    use zbus::{Connection, MatchRule, MessageStream};

    /// Withdraws the notification unless disarmed (also when the request future is dropped).
    struct Withdraw {
        id: u32,
        handle: Option<notify_rust::NotificationHandle>,
    }

    impl Withdraw {
        async fn now(mut self) {
            if let Some(h) = self.handle.take() {
                h.close_async().await;
            }
        }
        fn disarm(mut self) {
            self.handle = None;
        }
    }

    impl Drop for Withdraw {
        fn drop(&mut self) {
            if let Some(h) = self.handle.take() {
                tracing::debug!(id = h.id(), "withdrawing the notification");
                // zbus's own runtime drives the call; no async context is needed here.
                std::thread::spawn(move || h.close());
            }
        }
    }

    /// The notification server, as found on the session bus.
    struct Server {
        conn: Connection,
        /// Its capabilities (`GetCapabilities`); `actions` among them.
        caps: Vec<String>,
    }

    /// The server's answers, from its unique bus name only.
    struct Answers {
        owner: zbus::names::OwnedUniqueName,
        stream: MessageStream,
    }

    pub(super) async fn ask(
        request: &ConsentRequest,
        timeout: Duration,
    ) -> Result<Option<Decision>, String> {
        let server = connect().await?;
        let mut answers = subscribe(&server).await?;
        let markup = server.caps.iter().any(|c| c == "body-markup");
        let text = prompt_text(request, timeout, markup);
        let offered_always = text.actions.iter().any(|(k, _)| *k == ACTION_ALWAYS);
        let guard = show(&text).await?;
        let id = guard.id;
        tracing::debug!(id, origin = %request.caller.label(), "consent prompt shown");

        match tokio::time::timeout(timeout, wait(&mut answers, id, offered_always)).await {
            Ok(Ok(Some(decision))) => {
                guard.disarm();
                tracing::debug!(id, ?decision, "consent prompt answered");
                Ok(Some(decision))
            }
            Ok(Ok(None)) => {
                guard.disarm();
                Ok(None)
            }
            Ok(Err(why)) => {
                guard.now().await;
                Err(why)
            }
            Err(_) => {
                tracing::info!(id, origin = %request.caller.label(), "no answer in time: prompt withdrawn");
                guard.now().await;
                Ok(None)
            }
        }
    }

    /// The PIN-pad notice: shown until the returned guard is dropped. None if it cannot be
    /// shown (the signature goes on: the reader itself asks for the PIN).
    pub(super) async fn notice(request: &ConsentRequest) -> Option<Box<dyn Send>> {
        let caps: Vec<String> = match connect_any().await {
            Ok(server) => server.caps,
            Err(why) => {
                tracing::debug!(reason = %why, "no PIN-pad notice");
                return None;
            }
        };
        let markup = caps.iter().any(|c| c == "body-markup");
        match show(&pin_pad_text(request, markup)).await {
            Ok(guard) => Some(Box::new(guard)),
            Err(why) => {
                tracing::debug!(reason = %why, "no PIN-pad notice");
                None
            }
        }
    }

    pub(super) async fn capabilities() -> Result<Vec<String>, String> {
        connect_any().await.map(|s| s.caps)
    }

    /// A notification server, whatever it can show.
    async fn connect_any() -> Result<Server, String> {
        let conn = Connection::session()
            .await
            .map_err(|e| format!("no D-Bus session bus ({e})"))?;
        let caps: Vec<String> = conn
            .call_method(
                Some(BUS_NAME),
                PATH,
                Some(INTERFACE),
                "GetCapabilities",
                &(),
            )
            .await
            .and_then(|reply| reply.body().deserialize())
            .map_err(|e| format!("no notification server on the session bus ({e})"))?;
        Ok(Server { conn, caps })
    }

    /// Steps 1 and 2: the session bus, and a notification server on it that can show buttons.
    async fn connect() -> Result<Server, String> {
        let server = connect_any().await?;
        if !server.caps.iter().any(|c| c == "actions") {
            return Err(
                "the notification server cannot show buttons (no \"actions\" capability)"
                    .to_string(),
            );
        }
        Ok(server)
    }

    /// Step 3: listen for the server's signals, from its unique name only, before showing
    /// anything.
    async fn subscribe(server: &Server) -> Result<Answers, String> {
        let owner = zbus::fdo::DBusProxy::new(&server.conn)
            .await
            .map_err(|e| e.to_string())?
            .get_name_owner(
                BUS_NAME
                    .try_into()
                    .map_err(|e: zbus::Error| e.to_string())?,
            )
            .await
            .map_err(|e| format!("the notification server went away ({e})"))?;
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(owner.clone())
            .interface(INTERFACE)
            .path(PATH)
            .build()
            .map_err(|e| e.to_string())?;
        let stream = MessageStream::for_match_rule(rule, &server.conn, None)
            .await
            .map_err(|e| format!("cannot listen for the answer ({e})"))?;
        Ok(Answers { owner, stream })
    }

    /// Step 4, first half: show the prompt. It is withdrawn when the returned guard is dropped
    /// armed (the request was abandoned).
    async fn show(text: &PromptText) -> Result<Withdraw, String> {
        let mut notification = Notification::new();
        notification
            .appname("Keyport")
            .summary(&text.summary)
            .body(&text.body)
            .icon("dialog-password")
            .urgency(Urgency::Critical)
            .timeout(Timeout::Never);
        for (key, label) in &text.actions {
            notification.action(key, label);
        }
        let handle = notification
            .show_async()
            .await
            .map_err(|e| format!("cannot show the notification ({e})"))?;
        Ok(Withdraw {
            id: handle.id(),
            handle: Some(handle),
        })
    }

    /// Step 4, second half: the answer to notification `id` (`Ok(None)`: it expired unanswered).
    /// Signals about other notifications are skipped. No timeout here: the caller has it.
    async fn wait(
        answers: &mut Answers,
        id: u32,
        offered_always: bool,
    ) -> Result<Option<Decision>, String> {
        while let Some(msg) = answers.stream.next().await {
            let Ok(msg) = msg else { continue };
            let header = msg.header();
            if header.sender().map(|s| s.as_str()) != Some(answers.owner.as_str()) {
                continue;
            }
            match header.member().map(|m| m.as_str()) {
                Some("ActionInvoked") => {
                    if let Ok((nid, key)) = msg.body().deserialize::<(u32, String)>() {
                        if nid == id {
                            return Ok(Some(decision_for_action(&key, offered_always)));
                        }
                    }
                }
                Some("NotificationClosed") => {
                    if let Ok((nid, reason)) = msg.body().deserialize::<(u32, u32)>() {
                        if nid == id {
                            return Ok(decision_for_close(reason));
                        }
                    }
                }
                _ => {}
            }
        }
        Err("lost the session bus while waiting for an answer".to_string())
    }
}

/// macOS and Windows: notify-rust shows notifications there, but without buttons, so it cannot ask.
#[cfg(not(all(unix, not(target_os = "macos"))))]
mod imp {
    use super::*;

    pub(super) async fn ask(
        _request: &ConsentRequest,
        _timeout: Duration,
    ) -> Result<Option<Decision>, String> {
        Err("this platform's notifications have no buttons: Keyport cannot ask here".to_string())
    }

    pub(super) async fn notice(_request: &ConsentRequest) -> Option<Box<dyn Send>> {
        None
    }

    pub(super) async fn capabilities() -> Result<Vec<String>, String> {
        Err("this platform's notifications have no buttons".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_names_who_asks_and_what() {
        let t = prompt_text(
            &ConsentRequest::sample("https://a.example", "CN=Alice"),
            Duration::from_secs(60),
            false,
        );
        assert_eq!(t.summary, "Signature request from https://a.example");
        for part in [
            "https://a.example",
            "CN=Alice",
            "CN=Demo CA",
            "SHA-256 with RSA",
            "ABABABAB ABABABAB",
            "60 s",
        ] {
            assert!(t.body.contains(part), "{part} missing from {}", t.body);
        }
        let keys: Vec<_> = t.actions.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["allow", "always", "deny"]);
    }

    #[test]
    fn a_local_client_is_not_offered_always() {
        let t = prompt_text(
            &ConsentRequest::sample("a local application (no web origin)", "CN=A"),
            Duration::from_secs(5),
            false,
        );
        let keys: Vec<_> = t.actions.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["allow", "deny"]);
        assert_eq!(decision_for_action("always", false), Decision::Deny);
    }

    #[test]
    fn markup_and_control_characters_cannot_forge_lines() {
        let t = prompt_text(
            &ConsentRequest::sample(
                "https://a.example",
                "CN=<b>Bank</b>\nAlgorithm: none & more",
            ),
            Duration::from_secs(5),
            true,
        );
        assert!(t
            .body
            .contains("CN=&lt;b&gt;Bank&lt;/b&gt; Algorithm: none &amp; more"));
        assert_eq!(t.body.lines().count(), 6, "{}", t.body);
    }

    /// Issue 19, finding 9: line and paragraph separators (Pango breaks lines there) and bidi
    /// controls from a certificate forged lines; a long subject pushed the fingerprint and the
    /// time limit past the body's cut.
    #[test]
    fn no_certificate_text_forges_a_line_or_pushes_the_fingerprint_out() {
        let forged =
            "CN=A\u{2028}Issued by: CN=Root\u{2029}Digest: 00000000 00000000\u{202e}\u{2066}";
        for subject in [
            forged.to_string(),
            "&".repeat(3000),
            "<b>".repeat(1000),
            "😀".repeat(3000),
            format!("{forged}{}", "é&".repeat(3000)),
        ] {
            let r = ConsentRequest {
                issuer: subject.clone(),
                ..ConsentRequest::sample("https://a.example", &subject)
            };
            for markup in [true, false] {
                let t = prompt_text(&r, Duration::from_secs(60), markup);
                assert!(t.body.len() < MAX_BODY, "{}", t.body.len());
                let lines: Vec<&str> = t.body.split(['\n', '\u{2028}', '\u{2029}']).collect();
                assert_eq!(lines.len(), 6, "{}", t.body);
                assert_eq!(lines[4], "Digest: ABABABAB ABABABAB");
                assert_eq!(lines[5], "No answer within 60 s is a refusal.");
                assert_eq!(
                    lines.iter().filter(|l| l.starts_with("Issued by:")).count(),
                    1
                );
                assert!(!t.body.contains(['\u{202e}', '\u{2066}']), "{}", t.body);
                let notice = pin_pad_text(&r, markup);
                let lines: Vec<&str> = notice.body.split('\n').collect();
                assert_eq!(lines.len(), 4, "{}", notice.body);
                assert_eq!(lines[2], "Digest: ABABABAB ABABABAB");
            }
        }
    }

    #[test]
    fn the_pin_pad_notice_names_who_asks_and_what() {
        let t = pin_pad_text(
            &ConsentRequest::sample("https://a.example", "CN=<Alice>"),
            true,
        );
        assert_eq!(t.summary, "Type your PIN on the card reader");
        assert_eq!(
            t.body,
            "https://a.example asks to sign with your certificate.\n\
             Certificate: CN=&lt;Alice&gt;\n\
             Digest: ABABABAB ABABABAB\n\
             Type the PIN on the reader's keypad to sign, or press Cancel on the reader."
        );
        assert!(t.actions.is_empty());
    }

    #[test]
    fn only_the_buttons_allow() {
        assert_eq!(decision_for_action("allow", true), Decision::Allow);
        assert_eq!(decision_for_action("always", true), Decision::AllowAlways);
        assert_eq!(decision_for_action("deny", true), Decision::Deny);
        assert_eq!(decision_for_action("default", true), Decision::Deny);
        assert_eq!(decision_for_action("ALLOW", true), Decision::Deny);
        assert_eq!(decision_for_close(1), None);
        assert_eq!(decision_for_close(2), Some(Decision::Deny));
        assert_eq!(decision_for_close(3), Some(Decision::Deny));
    }
}
