//! What a prompt says about a [`ConsentRequest`]: the one renderer behind every prompt the
//! person sees (the consent notification, the PIN-pad notice, pinentry's consent window and the
//! description of its PIN window).
//!
//! The certificate's subject and issuer come from the token, which may be hostile, and the
//! caller's label from the page's origin. Every field goes through the same two steps:
//! 1. [`clean`]: each character of Unicode general category Cc (controls, NEL among them), Cf
//!    (format: every bidirectional control, zero-width characters, the soft hyphen, U+FEFF,
//!    U+061C, U+180E, …), Zl or Zp (line and paragraph separators, where Pango and other
//!    toolkits break lines) becomes a space, and runs of spaces become one. No field can start a
//!    line of its own, reorder what is shown, or hide text.
//! 2. [`cap`]: each field is cut (ending with `…`) to at most [`CAP_NAME`] or [`CAP_SHORT`]
//!    bytes *as the most demanding prompt encodes it* ([`encoded_len`]: UTF-8, a notification
//!    server's markup entities, Assuan's percent escapes). So a subject of any length leaves
//!    room for the lines after it: the whole text fits a notification body's 2,000 bytes and one
//!    Assuan line, and the fingerprint and time limit always show.
//!
//! The prompts then add their own framing (blank lines, a closing sentence) and their own
//! escaping (markup for a notification server that renders it, percent escapes for Assuan).

use super::{Caller, ConsentRequest};
use crate::i18n::{self, Catalog};
use std::time::Duration;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The cap of the caller, the certificate's subject and its issuer ([`cap`]'s unit).
pub const CAP_NAME: usize = 200;
/// The cap of the algorithm and the fingerprint (texts of the agent's own, capped all the same).
pub const CAP_SHORT: usize = 60;

/// What is cut off is replaced by this.
const MORE: char = '…';

/// What every prompt shows of one request, each field cleaned and capped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentText {
    /// Who asks: the web origin, or "a local application (no web origin)".
    pub caller: String,
    /// The first line: "{caller} asks to sign with your certificate." or "{caller} asks for 3
    /// signatures with your certificate."
    pub headline: String,
    /// "Certificate: {subject}".
    pub certificate: String,
    /// "Issued by: {issuer}".
    pub issuer: String,
    /// "Algorithm: {algorithm}".
    pub algorithm: String,
    /// "Digest: {fingerprint}", or for a batch "Fingerprint of the set: {fingerprint}".
    pub fingerprint: String,
}

impl ConsentText {
    /// The request's text in the person's language ([`crate::i18n::current`]).
    pub fn new(request: &ConsentRequest) -> ConsentText {
        ConsentText::in_language(i18n::current(), request)
    }

    /// The request's text in `catalog`'s language. The values are cleaned and capped before a
    /// translation places them.
    pub fn in_language(catalog: &Catalog, request: &ConsentRequest) -> ConsentText {
        let caller = match &request.caller {
            Caller::Origin(o) => field(o.as_str(), CAP_NAME),
            Caller::Local { .. } => field(&catalog.text("caller-local", &[]), CAP_NAME),
        };
        let subject = field(&request.subject, CAP_NAME);
        let issuer = field(&request.issuer, CAP_NAME);
        let algorithm = field(&request.algorithm, CAP_SHORT);
        let fingerprint = field(&request.digest_fingerprint, CAP_SHORT);
        let (headline, digest) = match request.count > 1 {
            true => (
                catalog.text(
                    "consent-headline-batch",
                    &[
                        ("caller", (&caller).into()),
                        ("count", request.count.into()),
                    ],
                ),
                "consent-digest-batch",
            ),
            false => (
                catalog.text("consent-headline", &[("caller", (&caller).into())]),
                "consent-digest",
            ),
        };
        ConsentText {
            headline,
            certificate: catalog.text("consent-certificate", &[("subject", (&subject).into())]),
            issuer: catalog.text("consent-issuer", &[("issuer", (&issuer).into())]),
            algorithm: catalog.text("consent-algorithm", &[("algorithm", (&algorithm).into())]),
            fingerprint: catalog.text(digest, &[("fingerprint", (&fingerprint).into())]),
            caller,
        }
    }

    /// The lines under the headline, in the order every prompt shows them: certificate,
    /// issuer, algorithm, fingerprint.
    pub fn details(&self) -> [&str; 4] {
        [
            &self.certificate,
            &self.issuer,
            &self.algorithm,
            &self.fingerprint,
        ]
    }
}

/// The line under the request in the agent's PIN prompts (pinentry's, the Windows PIN dialog).
pub fn pin_instruction() -> String {
    i18n::text("pin-instruction", &[])
}

/// The last line of the PIN-pad notice (a notification, the Windows notice window).
pub fn pin_pad_instruction() -> String {
    i18n::text("pin-pad-instruction", &[])
}

/// The closing line of a prompt that waits for an answer.
pub fn timeout_line(timeout: Duration) -> String {
    i18n::text(
        "consent-timeout",
        &[("seconds", timeout.as_secs().max(1).into())],
    )
}

/// `text` cleaned ([`clean`]) and capped ([`cap`]).
pub fn field(text: &str, max: usize) -> String {
    cap(&clean(text), max)
}

/// Whether `c` is blanked: general category Cc, Cf, Zl or Zp (U+0085, NEL, is Cc).
pub fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || c == '\u{85}'
}

/// `text` with every [`is_hidden`] character turned into a space, runs of spaces made one, and
/// no space at either end.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = if is_hidden(c) { ' ' } else { c };
        if c == ' ' {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

/// The most bytes `c` takes in any prompt: its UTF-8 length, or its escaped form where that is
/// longer (`&amp;`, `&lt;`, `&gt;` in a notification body with markup; `%25` on an Assuan line,
/// whose other escapes are of control characters, which [`clean`] removed).
pub fn encoded_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        '%' => 3,
        c => c.len_utf8(),
    }
}

/// `text` cut on a character so that it takes at most `max` bytes by [`encoded_len`], `…`
/// included when it is cut.
pub fn cap(text: &str, max: usize) -> String {
    let full: usize = text.chars().map(encoded_len).sum();
    if full <= max {
        return text.to_string();
    }
    let budget = max.saturating_sub(encoded_len(MORE));
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        used += encoded_len(c);
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.truncate(out.trim_end_matches(' ').len());
    out.push(MORE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::Caller;
    use crate::origin::Origin;

    fn request(subject: &str, count: usize) -> ConsentRequest {
        ConsentRequest {
            caller: Caller::Origin(Origin::parse("https://a.example").unwrap()),
            subject: subject.into(),
            issuer: "CN=Demo CA".into(),
            algorithm: "SHA-256 with RSA".into(),
            digest_fingerprint: "ABABABAB ABABABAB".into(),
            count,
        }
    }

    #[test]
    fn the_fields_name_who_asks_and_what() {
        let t = ConsentText::new(&request("CN=Alice", 1));
        assert_eq!(t.caller, "https://a.example");
        assert_eq!(
            t.headline,
            "https://a.example asks to sign with your certificate."
        );
        assert_eq!(
            t.details(),
            [
                "Certificate: CN=Alice",
                "Issued by: CN=Demo CA",
                "Algorithm: SHA-256 with RSA",
                "Digest: ABABABAB ABABABAB",
            ]
        );
        let t = ConsentText::new(&request("CN=Alice", 100));
        assert_eq!(
            t.headline,
            "https://a.example asks for 100 signatures with your certificate."
        );
        assert_eq!(t.fingerprint, "Fingerprint of the set: ABABABAB ABABABAB");
        let local = ConsentRequest {
            caller: Caller::Local { trusted: false },
            ..request("CN=A", 1)
        };
        assert_eq!(
            ConsentText::new(&local).caller,
            "a local application (no web origin)"
        );
        assert_eq!(
            timeout_line(Duration::from_secs(60)),
            "No answer within 60 s is a refusal."
        );
        assert_eq!(
            timeout_line(Duration::ZERO),
            "No answer within 1 s is a refusal."
        );
    }

    /// Every character of the categories, as the Unicode standard lists them (a sample of each
    /// kind), is blanked; letters, marks, symbols and visible spaces are kept.
    #[test]
    fn controls_format_characters_and_separators_are_blanked() {
        let hidden: &[(&str, &[char])] = &[
            (
                "C0",
                &['\u{0}', '\t', '\n', '\r', '\u{7}', '\u{1b}', '\u{1f}'],
            ),
            (
                "DEL and C1",
                &['\u{7f}', '\u{80}', '\u{85}', '\u{9b}', '\u{9f}'],
            ),
            ("soft hyphen", &['\u{ad}']),
            (
                "Arabic, Syriac",
                &['\u{600}', '\u{61c}', '\u{6dd}', '\u{70f}'],
            ),
            ("Mongolian vowel separator", &['\u{180e}']),
            (
                "zero width, LRM, RLM",
                &['\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}'],
            ),
            ("line, paragraph separators", &['\u{2028}', '\u{2029}']),
            (
                "embeddings, overrides",
                &['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}'],
            ),
            (
                "word joiner, invisible operators",
                &['\u{2060}', '\u{2061}', '\u{2064}'],
            ),
            (
                "isolates",
                &['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'],
            ),
            ("deprecated format", &['\u{206a}', '\u{206f}']),
            ("BOM", &['\u{feff}']),
            ("interlinear annotation", &['\u{fff9}', '\u{fffb}']),
            (
                "beyond the BMP",
                &[
                    '\u{110bd}',
                    '\u{1d173}',
                    '\u{e0001}',
                    '\u{e0020}',
                    '\u{e007f}',
                ],
            ),
        ];
        for (kind, chars) in hidden {
            for &c in *chars {
                let u = c as u32;
                assert!(is_hidden(c), "{kind}: U+{u:04X} kept");
                assert_eq!(clean(&format!("a{c}b")), "a b", "{kind}: U+{u:04X}");
            }
        }
        let kept: &[(&str, &[char])] = &[
            ("letters", &['a', 'é', 'Ж', 'ع', '中']),
            ("a combining mark", &['\u{301}']),
            ("symbols", &['😀', '<', '&', '%', '…']),
            ("visible spaces", &['\u{a0}', '\u{2003}', '\u{3000}']),
            ("private use", &['\u{e000}']),
        ];
        for (kind, chars) in kept {
            for &c in *chars {
                assert!(!is_hidden(c), "{kind}: U+{:04X} blanked", c as u32);
            }
        }
    }

    #[test]
    fn runs_collapse_and_nothing_forges_a_line() {
        assert_eq!(
            clean("\u{202e}  CN=Alice\u{2028}\u{2029}Issued by: x\r\n\u{85}Digest: 0 \u{2066}"),
            "CN=Alice Issued by: x Digest: 0"
        );
        assert_eq!(clean(""), "");
        assert_eq!(clean("\u{200b}\u{200b}"), "");
        let t = ConsentText::new(&request("CN=A\u{2028}Digest: 00000000 00000000", 1));
        for line in [
            &t.headline,
            &t.certificate,
            &t.issuer,
            &t.algorithm,
            &t.fingerprint,
        ] {
            assert!(!line.chars().any(is_hidden), "{line:?}");
        }
        assert_eq!(t.certificate, "Certificate: CN=A Digest: 00000000 00000000");
    }

    #[test]
    fn fields_are_capped_by_their_most_expensive_encoding() {
        assert_eq!(cap("short", 10), "short");
        assert_eq!(cap("0123456789", 10), "0123456789");
        // Cut: room for the ellipsis (3 bytes) is kept.
        assert_eq!(cap("0123456789x", 10), "0123456…");
        assert_eq!(cap("&&&", 14), "&&…");
        assert_eq!(cap("%%%%", 11), "%%…");
        assert_eq!(cap("ab   cdefgh", 8), "ab…");
        for unit in ["L", "é", "&", "<", "%", "😀", "a&%é"] {
            let long = unit.repeat(3000);
            let t = ConsentText::new(&ConsentRequest {
                issuer: long.clone(),
                ..request(&long, 1)
            });
            for f in [&t.certificate, &t.issuer] {
                let value = f.split_once(": ").unwrap().1;
                let size: usize = value.chars().map(encoded_len).sum();
                assert!(size <= CAP_NAME, "{unit}: {size}");
                assert!(size > CAP_NAME - 8, "{unit}: cut too short, {size}");
                assert!(value.ends_with('…'), "{unit}");
            }
            assert_eq!(t.fingerprint, "Digest: ABABABAB ABABABAB");
        }
    }
}
