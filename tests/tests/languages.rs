//! The person's language, end to end: the real agent started with a locale, asking through the
//! scripted notification server (a real D-Bus server on a private bus) and the scripted
//! pinentry; SoftHSM signs and openssl verifies. What each prompt must say is read from the
//! catalogues (`agent/i18n/`) and, for a few lines, written out here in the language itself.

use keyport::i18n::{self, Value as V};
use keyport_e2e::desktop::{FakeNotifications, PrivateBus};
use keyport_e2e::*;
use serde_json::{json, Value};
use std::path::PathBuf;

const NOTIFY: &str = env!("CARGO_BIN_EXE_fake-notifications");
const PINENTRY: &str = env!("CARGO_BIN_EXE_fake-pinentry");

/// The agent on `bus`, with `env` over the test environment (which speaks `C.UTF-8`).
fn agent_on(token: &Token, bus: &PrivateBus, extra: &[&str], env: &[(&str, &str)]) -> Agent {
    let mut args = BASE_ARGS.to_vec();
    args.push("--no-tray");
    args.extend_from_slice(extra);
    let mut all = vec![("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str())];
    all.extend_from_slice(env);
    Agent::start_raw(token, &args, &all)
}

/// A batch of `n` documents' SHA-256 digests.
fn digests(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| sha("sha256", format!("document {i}").as_bytes()))
        .collect()
}

fn batch(slot: u64, cert: &str, digests: &[Vec<u8>]) -> Value {
    json!({"slot_id": slot, "cert_id": cert, "pin": PIN, "algorithm_reference": "sha256",
           "data": digests.iter().map(|d| b64(d)).collect::<Vec<_>>()})
}

/// Sign a batch of `n` with the RSA key after the notification server's "allow", check every
/// signature with openssl, and return the one notification shown.
async fn batch_prompt(env: &[(&str, &str)], config: Option<&str>, n: usize) -> Value {
    let token = Token::provision();
    if let Some(text) = config {
        write(&token.dir.path().join("config/keyport/keyport.toml"), text);
    }
    let bus = PrivateBus::start();
    let notify = FakeNotifications::start(NOTIFY, &bus, token.dir.path(), "allow", None);
    let agent = agent_on(&token, &bus, &[], env);
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digests = digests(n);
    let sigs = c
        .ok("pkcs11.signDataBatch", batch(slot, "01", &digests))
        .await;
    let sigs = sigs.as_array().unwrap();
    assert_eq!(sigs.len(), n);
    for (d, s) in digests.iter().zip(sigs) {
        let s = unb64(s.as_str().unwrap());
        assert!(openssl_verify(&token.cert_der("rsa-2048"), "sha256", d, &s));
    }
    let shown = notify.events("notify");
    assert_eq!(shown.len(), 1, "{shown:?}");
    shown[0].clone()
}

/// What the notification for a batch of `n` from [`ALLOWED`] says in `language`.
fn expected_headline(language: &str, n: u64) -> String {
    i18n::catalog(language).text(
        "consent-headline-batch",
        &[("caller", V::Text(ALLOWED)), ("count", V::Number(n))],
    )
}

fn plain(language: &str, id: &str) -> String {
    i18n::plain(&i18n::catalog(language).text(id, &[]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_french_locale_the_notification_speaks_french_with_the_right_plural() {
    let n = batch_prompt(&[("LANG", "fr_FR.UTF-8")], None, 100).await;
    let (summary, body) = (n["summary"].as_str().unwrap(), n["body"].as_str().unwrap());
    let headline = expected_headline("fr", 100);
    assert_ne!(headline, expected_headline("en", 100));
    assert!(body.starts_with(&headline), "{body}");
    assert!(body.contains(FRENCH_BATCH_100), "{body}");
    assert!(
        !body.contains("signatures with your certificate"),
        "English: {body}"
    );
    assert_eq!(
        summary,
        i18n::catalog("fr").text("notify-consent-summary", &[("caller", V::Text(ALLOWED))])
    );
    // The certificate's own text stays as it is; the labels around it are French.
    assert!(body.contains("CN=Keyport Demo RSA-2048"), "{body}");
    assert!(body.contains(FRENCH_SET_FINGERPRINT), "{body}");
    assert_eq!(
        n["actions"],
        json!([
            "allow",
            plain("fr", "button-allow"),
            "always",
            plain("fr", "button-always"),
            "deny",
            plain("fr", "button-deny")
        ])
    );
    assert_eq!(n["actions"][1], FRENCH_ALLOW);
}

/// In French, 100 signatures in one answer; and one more form to be sure it is not the only one.
const FRENCH_BATCH_100: &str = "100 signatures";
const FRENCH_SET_FINGERPRINT: &str = "Empreinte de l'ensemble";
const FRENCH_ALLOW: &str = "Autoriser";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russian_counts_take_their_own_plural_forms() {
    // 2, 5 and 21 are three different forms in Russian (few, many, one).
    for (count, form) in [(2, "подписи"), (5, "подписей"), (21, "подпись")] {
        let n = batch_prompt(&[("LANG", "ru_RU.UTF-8")], None, count).await;
        let body = n["body"].as_str().unwrap();
        assert!(
            body.starts_with(&expected_headline("ru", count as u64)),
            "{body}"
        );
        assert!(
            body.contains(&format!("{count} {form} ")),
            "{count}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configurations_language_wins_over_the_environment() {
    let n = batch_prompt(&[("LANG", "fr_FR.UTF-8")], Some("language = \"de\"\n"), 3).await;
    let body = n["body"].as_str().unwrap();
    assert!(body.starts_with(&expected_headline("de", 3)), "{body}");
    assert!(body.contains("Zertifikat"), "{body}");
    assert_eq!(n["actions"][1], plain("de", "button-allow"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locale_without_a_catalogue_falls_back_to_english() {
    let n = batch_prompt(&[("LANG", "sw_KE.UTF-8"), ("LANGUAGE", "sw:yo")], None, 2).await;
    let body = n["body"].as_str().unwrap();
    assert!(
        body.starts_with(&format!(
            "{ALLOWED} asks for 2 signatures with your certificate."
        )),
        "{body}"
    );
    assert_eq!(n["actions"][1], "Allow");
}

#[test]
fn keyport_config_says_which_language_and_why() {
    let token = Token::provision();
    let said = |env: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["config"];
        all.extend_from_slice(args);
        let (code, out, err) = run_with_env(&token, &all, env);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .find(|l| l.starts_with("# Prompts speak "))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string()
    };
    assert_eq!(
        said(&[("LANG", "fr_FR.UTF-8")], &[]),
        "# Prompts speak fr (from LANG=fr_FR.UTF-8)"
    );
    assert_eq!(
        said(&[("LANG", "pt_BR.UTF-8"), ("LANGUAGE", "gd:lt")], &[]),
        "# Prompts speak lt (from LANGUAGE=lt)"
    );
    assert_eq!(
        said(&[("LANG", "fr_FR.UTF-8")], &["--language", "de"]),
        "# Prompts speak de (the configuration's language = \"de\")"
    );
    assert!(said(&[("LANG", "sw_KE.UTF-8")], &[])
        .starts_with("# Prompts speak en (the default: no catalogue for LANG=sw_KE.UTF-8"));
    // The administrator's file sets a default over the environment; the person's own file wins.
    let admin = token.dir.path().join("etc-keyport/keyport.toml");
    write(&admin, "language = \"lv\"\n");
    let line = said(&[("LANG", "fr_FR.UTF-8")], &[]);
    assert_eq!(
        line,
        "# Prompts speak lv (the configuration's language = \"lv\")"
    );
    write(
        &token.dir.path().join("config/keyport/keyport.toml"),
        "language = \"et\"\n",
    );
    assert!(said(&[("LANG", "fr_FR.UTF-8")], &[]).starts_with("# Prompts speak et "));
    std::fs::remove_file(&admin).unwrap();
    // Not a language at all: refused, naming the value.
    let (code, _, err) = run_with_env(&token, &["config", "--language", "12!"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid language \"12!\""), "{err}");
}

/// The scripted pinentry for one agent: answers, and what it was sent.
struct Person {
    dir: tempfile::TempDir,
}

impl Person {
    fn new(answers: &[&str]) -> Person {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script"), answers.join("\n") + "\n").unwrap();
        let program = dir.path().join("pinentry");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nFAKE_PINENTRY_SCRIPT='{}' FAKE_PINENTRY_LOG='{}' exec '{PINENTRY}'\n",
                dir.path().join("script").display(),
                dir.path().join("log").display(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Person { dir }
    }

    fn program(&self) -> PathBuf {
        self.dir.path().join("pinentry")
    }

    fn dialogs(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The argument of the first `verb` command of a dialog.
fn arg(dialog: &Value, verb: &str) -> Option<String> {
    dialog["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == verb)
        .map(|c| c[1].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinentry_gets_french_texts_buttons_and_the_wrong_pin_error() {
    let token = Token::provision();
    // The agent's PIN window: a wrong PIN, then the right one. Then a consent dialog (the
    // page sends the PIN): Allow.
    let person = Person::new(&["pin kpWrong0000", &format!("pin {PIN}"), "ok"]);
    let program = person.program();
    let mut args = BASE_ARGS.to_vec();
    args.extend(["--no-tray", "--consent", "pinentry"]);
    args.extend(["--pinentry", program.to_str().unwrap()]);
    let agent = Agent::start_raw(
        &token,
        &args,
        &[("DISPLAY", ":99"), ("LANG", "fr_FR.UTF-8")],
    );
    let mut c = agent.client(Some(ALLOWED)).await;
    let slot = c.slot_of("keyport-demo").await;
    let digest = sha("sha256", b"signe en francais");
    let p = json!({"slot_id": slot, "cert_id": "02", "data": b64(&digest),
                   "algorithm_reference": "sha256"});
    let sig = c.ok("pkcs11.signData", p.clone()).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));
    let mut with_pin = p;
    with_pin["pin"] = json!(PIN);
    let sig = c.ok("pkcs11.signData", with_pin).await;
    assert!(token.verifies("ec-p256", "sha256", &digest, &sig));

    let fr = i18n::catalog("fr");
    let dialogs = person.dialogs();
    assert_eq!(dialogs.len(), 3, "{dialogs:?}");
    for d in &dialogs {
        assert_eq!(
            arg(d, "SETTITLE").unwrap(),
            fr.text("title-signature-request", &[])
        );
        let desc = arg(d, "SETDESC").unwrap();
        assert!(
            desc.starts_with(&fr.text("consent-headline", &[("caller", V::Text(ALLOWED))])),
            "{desc}"
        );
        assert!(desc.contains(FRENCH_ISSUED_BY), "{desc}");
    }
    // The PIN window: its instruction, label and buttons, and why it is back.
    let (first, second, consent) = (&dialogs[0], &dialogs[1], &dialogs[2]);
    assert!(arg(first, "SETDESC")
        .unwrap()
        .contains(&fr.text("pin-instruction", &[])));
    assert_eq!(arg(first, "SETPROMPT").unwrap(), fr.text("pin-label", &[]));
    assert_eq!(arg(first, "SETOK").unwrap(), fr.text("button-sign", &[]));
    assert_eq!(
        arg(first, "SETCANCEL").unwrap(),
        fr.text("button-deny", &[])
    );
    assert_eq!(arg(first, "SETERROR"), None);
    let error = arg(second, "SETERROR").unwrap();
    assert!(
        [
            fr.text("pin-wrong", &[]),
            fr.text("pin-wrong-few-tries", &[]),
            fr.text("pin-wrong-final-try", &[]),
        ]
        .contains(&error),
        "{error}"
    );
    assert!(error.starts_with(FRENCH_WRONG_PIN), "{error}");
    // The consent dialog: Allow, Always allow this site, Deny, in French.
    assert_eq!(arg(consent, "SETOK").unwrap(), fr.text("button-allow", &[]));
    assert_eq!(
        arg(consent, "SETNOTOK").unwrap(),
        fr.text("button-always", &[])
    );
    assert_eq!(
        arg(consent, "SETCANCEL").unwrap(),
        fr.text("button-deny", &[])
    );
    assert!(arg(consent, "SETDESC")
        .unwrap()
        .contains(&fr.text("consent-timeout", &[("seconds", V::Number(60))])));
    let log = agent.log();
    assert!(!log.contains(PIN) && !log.contains("kpWrong0000"));
}

const FRENCH_ISSUED_BY: &str = "Émis par";
const FRENCH_WRONG_PIN: &str = "PIN incorrect";
