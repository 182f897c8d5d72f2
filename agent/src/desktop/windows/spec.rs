//! What each Windows dialog says and which buttons it has, and what its ending means: plain
//! data, built from [`ConsentText`] (the one renderer of prompt texts: every field cleaned and
//! capped there) and unit-tested on every platform. `dialog.rs` only draws a [`DialogSpec`].

use crate::consent::text::{
    field, pin_instruction, pin_pad_instruction, timeout_line, ConsentText, CAP_NAME,
};
use crate::consent::{Caller, ConsentRequest, Decision};
use crate::i18n;
use std::time::Duration;

/// The consent dialog's title, in the person's language (an end-to-end test finds the window by
/// its English title).
pub fn consent_title() -> String {
    i18n::text("title-allow-signing", &[])
}
/// The PIN dialog's title.
pub fn pin_title() -> String {
    i18n::text("title-pin", &[])
}
/// The PIN-pad notice's title.
pub fn notice_title() -> String {
    i18n::text("title-pin-pad", &[])
}

/// Win32's own command ids: Enter without another default sends `IDOK`, Escape sends `IDCANCEL`.
pub const IDOK: u16 = 1;
pub const IDCANCEL: u16 = 2;
/// The consent dialog's buttons. Deny is `IDCANCEL`, so Escape denies.
pub const ID_ALLOW: u16 = 100;
pub const ID_ALWAYS: u16 = 101;
pub const ID_DENY: u16 = IDCANCEL;
/// The text blocks, by the line they show (tests read them back by these ids).
pub const ID_HEADLINE: u16 = 200;
pub const ID_CERTIFICATE: u16 = 201;
pub const ID_ISSUER: u16 = 202;
pub const ID_ALGORITHM: u16 = 203;
pub const ID_FINGERPRINT: u16 = 204;
pub const ID_INSTRUCTION: u16 = 205;
/// The wrong-PIN reason and the tries left.
pub const ID_ERROR: u16 = 206;
pub const ID_COUNTDOWN: u16 = 207;
/// The PIN field and its label.
pub const ID_PIN_LABEL: u16 = 300;
pub const ID_PIN: u16 = 301;

/// A button's label in the person's language; `&` marks the letter that, with Alt, presses the
/// button (the catalogues' `_`: Alt+A, Alt+W, Alt+D in English).
pub fn label(id: &str) -> String {
    i18n::windows_label(&i18n::text(id, &[]))
}

/// How long the buttons that say yes (Allow, Always, Sign) stay disabled after the dialog
/// appears. The dialog takes the foreground while the person may be typing elsewhere (in the
/// very page that asks): no key or click meant for that page can answer yes, or submit half a
/// PIN, in this first moment. Refusals work at once.
pub const INPUT_GUARD: Duration = Duration::from_millis(600);

/// The longest PIN the field takes, in UTF-16 units.
pub const MAX_PIN: usize = 256;

/// How a text block looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The first line, in bold.
    Headline,
    Body,
    /// The wrong-PIN reason, in red.
    Error,
}

/// One static text, shown as it is (no `&` mnemonics: a certificate cannot add a shortcut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub id: u16,
    pub text: String,
    pub style: Style,
}

/// One push button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub id: u16,
    pub label: String,
    /// It says yes: disabled for [`INPUT_GUARD`] after the dialog appears.
    pub says_yes: bool,
}

/// Everything a dialog shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogSpec {
    pub title: String,
    /// Top down.
    pub blocks: Vec<Block>,
    /// The masked PIN field, under the blocks: its label.
    pub field: Option<String>,
    /// Left to right, at the bottom right.
    pub buttons: Vec<Button>,
    /// Enter presses it, unless the focus is on another button.
    pub default: Option<u16>,
    /// Where the focus starts.
    pub focus: Option<u16>,
    /// After this the dialog closes itself ([`Ending::TimedOut`]); the block [`ID_COUNTDOWN`]
    /// shows the time left. None: it stays until withdrawn (the PIN-pad notice).
    pub timeout: Option<Duration>,
}

impl DialogSpec {
    pub fn button(&self, id: u16) -> Option<&Button> {
        self.buttons.iter().find(|b| b.id == id)
    }

    pub fn block(&self, id: u16) -> Option<&Block> {
        self.blocks.iter().find(|b| b.id == id)
    }
}

/// How a dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A button was pressed (click, Space, Enter, Alt+letter), or Escape (`IDCANCEL`).
    Button(u16),
    /// The window's close box, or Alt+F4.
    Closed,
    /// Its own time limit.
    TimedOut,
    /// The agent took it back (the request went away, or its wait ended first).
    Withdrawn,
}

/// The request's lines, as [`ConsentText`] renders them, as blocks.
fn request_blocks(text: &ConsentText) -> Vec<Block> {
    let body = |id, t: &str| Block {
        id,
        text: t.to_string(),
        style: Style::Body,
    };
    vec![
        Block {
            id: ID_HEADLINE,
            text: text.headline.clone(),
            style: Style::Headline,
        },
        body(ID_CERTIFICATE, &text.certificate),
        body(ID_ISSUER, &text.issuer),
        body(ID_ALGORITHM, &text.algorithm),
        body(ID_FINGERPRINT, &text.fingerprint),
    ]
}

fn countdown(timeout: Duration) -> Block {
    Block {
        id: ID_COUNTDOWN,
        text: timeout_line(timeout),
        style: Style::Body,
    }
}

/// Whether the dialog for `request` offers "Always allow this site": only for a web origin (it
/// is remembered per origin; a local program has none).
pub fn offers_always(request: &ConsentRequest) -> bool {
    matches!(request.caller, Caller::Origin(_))
}

/// The consent dialog: who asks, the certificate's subject and issuer, the algorithm, the
/// fingerprint (and the count, in the headline), the time left; Allow / Always allow this site
/// (web origins only) / Deny. The focus starts on Deny, which is also the default: Enter alone
/// refuses.
pub fn consent(request: &ConsentRequest, timeout: Duration) -> DialogSpec {
    let mut blocks = request_blocks(&ConsentText::new(request));
    blocks.push(countdown(timeout));
    let mut buttons = vec![Button {
        id: ID_ALLOW,
        label: label("button-allow"),
        says_yes: true,
    }];
    if offers_always(request) {
        buttons.push(Button {
            id: ID_ALWAYS,
            label: label("button-always"),
            says_yes: true,
        });
    }
    buttons.push(Button {
        id: ID_DENY,
        label: label("button-deny"),
        says_yes: false,
    });
    DialogSpec {
        title: consent_title(),
        blocks,
        field: None,
        buttons,
        default: Some(ID_DENY),
        focus: Some(ID_DENY),
        timeout: Some(timeout),
    }
}

/// The PIN dialog: the request as in the consent dialog, the instruction, the reason the last
/// PIN failed (`error`, cleaned and capped like the rest), the masked field, the time left;
/// Sign (Enter) / Cancel (Escape).
pub fn pin(request: &ConsentRequest, error: Option<&str>, timeout: Duration) -> DialogSpec {
    let mut blocks = request_blocks(&ConsentText::new(request));
    blocks.push(Block {
        id: ID_INSTRUCTION,
        text: pin_instruction(),
        style: Style::Body,
    });
    if let Some(error) = error.map(|e| field(e, CAP_NAME)).filter(|e| !e.is_empty()) {
        blocks.push(Block {
            id: ID_ERROR,
            text: error,
            style: Style::Error,
        });
    }
    blocks.push(countdown(timeout));
    DialogSpec {
        title: pin_title(),
        blocks,
        field: Some(i18n::text("pin-label", &[])),
        buttons: vec![
            Button {
                id: IDOK,
                label: label("button-sign"),
                says_yes: true,
            },
            Button {
                id: IDCANCEL,
                label: label("button-cancel"),
                says_yes: false,
            },
        ],
        default: Some(IDOK),
        focus: Some(ID_PIN),
        timeout: Some(timeout),
    }
}

/// The notice while a PIN-pad reader waits: who asks, the certificate, the fingerprint, and
/// where to type. No buttons and no time limit: it goes when the agent withdraws it (closing it
/// only hides it; the reader has the answer).
pub fn notice(request: &ConsentRequest) -> DialogSpec {
    let text = ConsentText::new(request);
    let blocks = request_blocks(&text)
        .into_iter()
        .filter(|b| matches!(b.id, ID_HEADLINE | ID_CERTIFICATE | ID_FINGERPRINT))
        .chain([Block {
            id: ID_INSTRUCTION,
            text: pin_pad_instruction(),
            style: Style::Body,
        }])
        .collect();
    DialogSpec {
        title: notice_title(),
        blocks,
        field: None,
        buttons: Vec::new(),
        default: None,
        focus: None,
        timeout: None,
    }
}

/// What the consent dialog's ending means. Only Allow and (when it was offered) Always allow;
/// any other button, Escape or the close box is a refusal; no answer in time, or a dialog taken
/// back, is no answer (`None`).
pub fn decision(ending: Ending, offered_always: bool) -> Option<Decision> {
    match ending {
        Ending::Button(ID_ALLOW) => Some(Decision::Allow),
        Ending::Button(ID_ALWAYS) if offered_always => Some(Decision::AllowAlways),
        Ending::Button(_) | Ending::Closed => Some(Decision::Deny),
        Ending::TimedOut | Ending::Withdrawn => None,
    }
}

/// What the PIN dialog's ending means, apart from the PIN itself: `Some(true)` = the person
/// submitted the field (Sign or Enter), `Some(false)` = a refusal (Cancel, Escape, the close
/// box), `None` = no answer in time.
pub fn pin_submitted(ending: Ending) -> Option<bool> {
    match ending {
        Ending::Button(IDOK) => Some(true),
        Ending::Button(_) | Ending::Closed => Some(false),
        Ending::TimedOut | Ending::Withdrawn => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(spec: &DialogSpec) -> Vec<&str> {
        spec.blocks.iter().map(|b| b.text.as_str()).collect()
    }

    #[test]
    fn the_consent_dialog_names_who_asks_and_what() {
        let spec = consent(
            &ConsentRequest::sample("https://a.example", "CN=Alice"),
            Duration::from_secs(60),
        );
        assert_eq!(spec.title, "Keyport: allow signing?");
        assert_eq!(
            texts(&spec),
            [
                "https://a.example asks to sign with your certificate.",
                "Certificate: CN=Alice",
                "Issued by: CN=Demo CA",
                "Algorithm: SHA-256 with RSA",
                "Digest: ABABABAB ABABABAB",
                "No answer within 60 s is a refusal.",
            ]
        );
        assert_eq!(spec.blocks[0].style, Style::Headline);
        let labels: Vec<_> = spec
            .buttons
            .iter()
            .map(|b| (b.id, b.label.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                (ID_ALLOW, "&Allow"),
                (ID_ALWAYS, "Al&ways allow this site"),
                (ID_DENY, "&Deny")
            ]
        );
        assert_eq!(ID_DENY, IDCANCEL, "Escape denies");
        assert_eq!((spec.default, spec.focus), (Some(ID_DENY), Some(ID_DENY)));
        assert!(spec.button(ID_ALLOW).unwrap().says_yes);
        assert!(spec.button(ID_ALWAYS).unwrap().says_yes);
        assert!(!spec.button(ID_DENY).unwrap().says_yes);
        assert_eq!(spec.field, None);

        let mut batch = ConsentRequest::sample("https://a.example", "CN=Alice");
        batch.count = 7;
        let spec = consent(&batch, Duration::from_secs(5));
        assert_eq!(
            spec.block(ID_HEADLINE).unwrap().text,
            "https://a.example asks for 7 signatures with your certificate."
        );
        assert_eq!(
            spec.block(ID_FINGERPRINT).unwrap().text,
            "Fingerprint of the set: ABABABAB ABABABAB"
        );
    }

    #[test]
    fn a_local_caller_is_not_offered_always() {
        let request = ConsentRequest::sample("not an origin", "CN=A");
        assert!(!offers_always(&request));
        let spec = consent(&request, Duration::from_secs(5));
        let ids: Vec<_> = spec.buttons.iter().map(|b| b.id).collect();
        assert_eq!(ids, [ID_ALLOW, ID_DENY]);
        assert_eq!(
            spec.blocks[0].text,
            "a local application (no web origin) asks to sign with your certificate."
        );
    }

    #[test]
    fn only_allow_and_an_offered_always_say_yes() {
        assert_eq!(
            decision(Ending::Button(ID_ALLOW), true),
            Some(Decision::Allow)
        );
        assert_eq!(
            decision(Ending::Button(ID_ALWAYS), true),
            Some(Decision::AllowAlways)
        );
        // Never offered, so never taken as "always".
        assert_eq!(
            decision(Ending::Button(ID_ALWAYS), false),
            Some(Decision::Deny)
        );
        for refusal in [ID_DENY, IDOK, 0, 999] {
            assert_eq!(
                decision(Ending::Button(refusal), true),
                Some(Decision::Deny)
            );
        }
        assert_eq!(decision(Ending::Closed, true), Some(Decision::Deny));
        assert_eq!(decision(Ending::TimedOut, true), None);
        assert_eq!(decision(Ending::Withdrawn, true), None);

        assert_eq!(pin_submitted(Ending::Button(IDOK)), Some(true));
        assert_eq!(pin_submitted(Ending::Button(IDCANCEL)), Some(false));
        assert_eq!(pin_submitted(Ending::Button(ID_ALLOW)), Some(false));
        assert_eq!(pin_submitted(Ending::Closed), Some(false));
        assert_eq!(pin_submitted(Ending::TimedOut), None);
        assert_eq!(pin_submitted(Ending::Withdrawn), None);
    }

    #[test]
    fn the_pin_dialog_shows_the_request_the_reason_and_a_masked_field() {
        let request = ConsentRequest::sample("https://a.example", "CN=Alice");
        let spec = pin(&request, None, Duration::from_secs(30));
        assert_eq!(spec.title, "Keyport: PIN");
        assert_eq!(spec.field.as_deref(), Some("PIN:"));
        assert_eq!(spec.block(ID_ERROR), None);
        assert_eq!(
            texts(&spec)[4..],
            [
                "Digest: ABABABAB ABABABAB",
                "Enter the token's PIN to sign.",
                "No answer within 30 s is a refusal.",
            ]
        );
        assert_eq!((spec.default, spec.focus), (Some(IDOK), Some(ID_PIN)));
        assert!(spec.button(IDOK).unwrap().says_yes);
        assert!(!spec.button(IDCANCEL).unwrap().says_yes);

        let spec = pin(
            &request,
            Some("Wrong PIN.\u{2028}One try is left\u{202e} before the PIN locks."),
            Duration::from_secs(30),
        );
        let error = spec.block(ID_ERROR).unwrap();
        assert_eq!(error.style, Style::Error);
        assert_eq!(
            error.text,
            "Wrong PIN. One try is left before the PIN locks."
        );
        let long = "x".repeat(5000);
        let spec = pin(&request, Some(&long), Duration::from_secs(30));
        assert!(spec.block(ID_ERROR).unwrap().text.len() <= CAP_NAME);
        assert!(pin(&request, Some(" \u{200b} "), Duration::from_secs(1))
            .block(ID_ERROR)
            .is_none());
    }

    #[test]
    fn certificate_text_is_cleaned_capped_and_never_a_mnemonic() {
        let hostile = format!(
            "CN=&Allow\r\nIssued by: CN=Root\u{2029}{}",
            "&".repeat(3000)
        );
        let request = ConsentRequest {
            issuer: hostile.clone(),
            ..ConsentRequest::sample("https://a.example", &hostile)
        };
        for spec in [
            consent(&request, Duration::from_secs(5)),
            pin(&request, None, Duration::from_secs(5)),
            notice(&request),
        ] {
            for b in &spec.blocks {
                assert!(!b.text.contains(['\r', '\n', '\u{2029}']), "{:?}", b.text);
                assert!(b.text.chars().count() < CAP_NAME + 20, "{}", b.text.len());
            }
            let cert = spec.block(ID_CERTIFICATE).unwrap();
            assert!(cert
                .text
                .starts_with("Certificate: CN=&Allow Issued by: CN=Root &&"));
            assert!(cert.text.ends_with('…'));
            assert_eq!(
                spec.block(ID_FINGERPRINT).unwrap().text,
                "Digest: ABABABAB ABABABAB"
            );
        }
    }

    #[test]
    fn the_pin_pad_notice_has_no_buttons_and_no_time_limit() {
        let spec = notice(&ConsentRequest::sample("https://a.example", "CN=Alice"));
        assert_eq!(spec.title, "Keyport: type your PIN on the reader");
        assert_eq!(
            texts(&spec),
            [
                "https://a.example asks to sign with your certificate.",
                "Certificate: CN=Alice",
                "Digest: ABABABAB ABABABAB",
                "Type the PIN on the reader's keypad to sign, or press Cancel on the reader.",
            ]
        );
        assert!(spec.buttons.is_empty());
        assert_eq!(spec.timeout, None);
        assert_eq!(spec.field, None);
    }

    #[test]
    fn the_three_titles_differ() {
        // `xdotool search --name` matches a regular expression anywhere in a title: no title
        // contains another.
        let titles = [consent_title(), pin_title(), notice_title()];
        for a in &titles {
            for b in &titles {
                assert!(a == b || !a.contains(b.as_str()), "{a:?} contains {b:?}");
            }
        }
    }
}
