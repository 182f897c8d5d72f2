//! Certificate filters (`pkcs11.certificates` with `filter`) against SoftHSM.
//!
//! The demo token's certificates all say digitalSignature and are valid now, and other tests
//! count them, so each test here writes a mix of its own onto the second token, `keyport-empty`,
//! before it starts the agent: certificates made with openssl, with several key usages (one
//! without the extension) and validity periods (one expired, one not yet valid), one with its
//! private key, one with only a public key.

use keyport_e2e::*;
use keyport_protocol as p;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

/// nonRepudiation, 2020 to 2040, with its private key (hidden until login, as on a card).
const NR: &str = "11";
/// digitalSignature, 2020 to 2040, with only its public key on the token.
const DS: &str = "12";
/// digitalSignature and nonRepudiation, 2020 to 2040.
const BOTH: &str = "13";
/// No key usage extension (a basicConstraints one instead), 2020 to 2040.
const NO_KU: &str = "14";
/// digitalSignature, 2015 to 2020: expired.
const EXPIRED: &str = "15";
/// digitalSignature, 2030 to 2040: not yet valid.
const NOT_YET: &str = "16";
/// keyAgreement, 2020 to 2040.
const KA: &str = "17";

/// The mix: CKA_ID, label, the extension (openssl config syntax), notBefore, notAfter.
const MIX: [(&str, &str, &str, &str, &str); 7] = [
    (
        NR,
        "nr",
        "keyUsage = critical,nonRepudiation",
        "20200101000000Z",
        "20400101000000Z",
    ),
    (
        DS,
        "ds",
        "keyUsage = critical,digitalSignature",
        "20200101000000Z",
        "20400101000000Z",
    ),
    (
        BOTH,
        "both",
        "keyUsage = critical,digitalSignature,nonRepudiation",
        "20200101000000Z",
        "20400101000000Z",
    ),
    (
        NO_KU,
        "no-ku",
        "basicConstraints = critical,CA:FALSE",
        "20200101000000Z",
        "20400101000000Z",
    ),
    (
        EXPIRED,
        "expired",
        "keyUsage = critical,digitalSignature",
        "20150101000000Z",
        "20200101000000Z",
    ),
    (
        NOT_YET,
        "not-yet",
        "keyUsage = critical,digitalSignature",
        "20300101000000Z",
        "20400101000000Z",
    ),
    (
        KA,
        "ka",
        "keyUsage = critical,keyAgreement",
        "20200101000000Z",
        "20400101000000Z",
    ),
];

const ALL: [&str; 7] = [NR, DS, BOTH, NO_KU, EXPIRED, NOT_YET, KA];

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pkcs11_tool(token: &Token) -> Command {
    let mut cmd = Command::new("pkcs11-tool");
    cmd.env("SOFTHSM2_CONF", token.conf()).args([
        "--module",
        MODULE,
        "--token-label",
        "keyport-empty",
        "--login",
        "--pin",
        PIN,
    ]);
    cmd
}

fn mix_dir(token: &Token) -> PathBuf {
    token.dir.path().join("mix")
}

/// The DER of a certificate of the mix.
fn mix_der(token: &Token, id: &str) -> Vec<u8> {
    std::fs::read(mix_dir(token).join(format!("{id}.der"))).unwrap()
}

/// The demo tokens, plus [`MIX`] on `keyport-empty`. `openssl req -x509` of OpenSSL 3.0 cannot
/// date a certificate in the past (no `-not_before`), so `openssl ca -selfsign` makes them all,
/// with `-startdate`/`-enddate`.
fn provision_mix() -> Token {
    let token = Token::provision();
    let dir = mix_dir(&token);
    std::fs::create_dir_all(dir.join("new")).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "2000\n").unwrap();
    let mut conf = format!(
        "[ca]\ndefault_ca = mix\n\
         [mix]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}/new\nserial = {d}/serial\n\
         default_md = sha256\npolicy = any\nunique_subject = no\nemail_in_dn = no\n\
         [any]\ncommonName = supplied\n",
        d = dir.display()
    );
    for (id, _, ext, _, _) in MIX {
        conf.push_str(&format!("[ext{id}]\n{ext}\n"));
    }
    std::fs::write(dir.join("ca.cnf"), conf).unwrap();
    let file = |name: String| dir.join(name);
    for (id, label, _, start, end) in MIX {
        run(Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout"])
            .arg(file(format!("{id}.key")))
            .arg("-out")
            .arg(file(format!("{id}.csr")))
            .args(["-subj", &format!("/CN=Keyport Filter {label}")]));
        run(Command::new("openssl")
            .args(["ca", "-batch", "-notext", "-selfsign", "-config"])
            .arg(file("ca.cnf".into()))
            .arg("-keyfile")
            .arg(file(format!("{id}.key")))
            .arg("-in")
            .arg(file(format!("{id}.csr")))
            .arg("-out")
            .arg(file(format!("{id}.pem")))
            .args(["-startdate", start, "-enddate", end])
            .args(["-extensions", &format!("ext{id}")]));
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(file(format!("{id}.pem")))
            .arg("-out")
            .arg(file(format!("{id}.der"))));
        run(pkcs11_tool(&token)
            .arg("--write-object")
            .arg(file(format!("{id}.der")))
            .args(["--type", "cert", "--id", id, "--label", label]));
    }
    // NR's private key. `--private`: without it pkcs11-tool writes a private key that any
    // session sees, logged in or not, unlike a card's (and the demo token's) keys.
    run(Command::new("openssl")
        .args(["pkey", "-outform", "DER", "-in"])
        .arg(file(format!("{NR}.key")))
        .arg("-out")
        .arg(file("nr-key.der".into())));
    run(pkcs11_tool(&token)
        .arg("--write-object")
        .arg(file("nr-key.der".into()))
        .args([
            "--type",
            "privkey",
            "--private",
            "--id",
            NR,
            "--label",
            "nr",
        ]));
    // DS's public key only (no private key): what a session that is not logged in sees of a key.
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(file(format!("{DS}.key")))
        .arg("-out")
        .arg(file("ds-pub.der".into())));
    run(pkcs11_tool(&token)
        .arg("--write-object")
        .arg(file("ds-pub.der".into()))
        .args(["--type", "pubkey", "--id", DS, "--label", "ds"]));
    token
}

/// The ids (sorted) of the certificates `pkcs11.certificates` lists with this filter.
async fn ids(c: &mut Client, slot: u64, filter: Value) -> Vec<String> {
    let list = c
        .ok(
            "pkcs11.certificates",
            json!({"slot_id": slot, "filter": filter}),
        )
        .await;
    sorted_ids(&list)
}

fn sorted_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Sign with the key of `cert_id` (logging the token in) and check the signature with openssl.
async fn sign(c: &mut Client, slot: u64, cert_id: &str, cert_der: &[u8]) {
    let digest = sha("sha256", b"log the token in");
    let sig = c
        .ok(
            "pkcs11.signData",
            json!({"slot_id": slot, "cert_id": cert_id, "pin": PIN, "data": b64(&digest),
                   "algorithm_reference": "sha256"}),
        )
        .await;
    assert!(openssl_verify(
        cert_der,
        "sha256",
        &digest,
        &unb64(sig.as_str().unwrap())
    ));
}

#[tokio::test]
async fn key_usage_and_validity_pick_their_certificates() {
    let token = &provision_mix();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-empty").await;

    // No filter, an empty one, a null one: every certificate, as before filters.
    let plain = c.ok("pkcs11.certificates", json!({"slot_id": slot})).await;
    assert_eq!(sorted_ids(&plain), ALL);
    assert_eq!(ids(&mut c, slot, json!({})).await, ALL);
    assert_eq!(ids(&mut c, slot, json!(null)).await, ALL);
    for (id, ..) in MIX {
        let e = plain
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap();
        assert_eq!(unb64(e["base64"].as_str().unwrap()), mix_der(token, id));
    }

    // key_usage: the certificates with that bit; the one without the extension never passes.
    assert_eq!(
        ids(&mut c, slot, json!({"key_usage": "nonRepudiation"})).await,
        [NR, BOTH]
    );
    assert_eq!(
        ids(&mut c, slot, json!({"key_usage": "digitalSignature"})).await,
        [DS, BOTH, EXPIRED, NOT_YET]
    );
    assert_eq!(
        ids(&mut c, slot, json!({"key_usage": "keyAgreement"})).await,
        [KA]
    );
    for usage in [
        "keyEncipherment",
        "dataEncipherment",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ] {
        assert!(
            ids(&mut c, slot, json!({"key_usage": usage}))
                .await
                .is_empty(),
            "{usage}"
        );
    }

    // valid_at: notBefore <= t <= notAfter.
    let at = |t: &str| json!({"valid_at": t});
    let current = [NR, DS, BOTH, NO_KU, KA];
    assert_eq!(ids(&mut c, slot, at("2025-06-01T00:00:00Z")).await, current);
    // What a page's `new Date().toISOString()` sends: milliseconds.
    assert_eq!(
        ids(&mut c, slot, at("2025-06-01T12:34:56.789Z")).await,
        current
    );
    assert_eq!(
        ids(&mut c, slot, at("2017-03-15T08:30:00Z")).await,
        [EXPIRED]
    );
    assert_eq!(
        ids(&mut c, slot, at("2035-01-01T00:00:00Z")).await,
        [NR, DS, BOTH, NO_KU, NOT_YET, KA]
    );
    assert!(ids(&mut c, slot, at("2045-01-01T00:00:00Z"))
        .await
        .is_empty());
    assert!(ids(&mut c, slot, at("2010-01-01T00:00:00Z"))
        .await
        .is_empty());
    // Both ends count: at 2020-01-01T00:00:00Z the expired one ends and the others begin; the
    // same instant written with an offset gives the same answer.
    let edge = [NR, DS, BOTH, NO_KU, EXPIRED, KA];
    assert_eq!(ids(&mut c, slot, at("2020-01-01T00:00:00Z")).await, edge);
    assert_eq!(
        ids(&mut c, slot, at("2020-01-01T01:00:00+01:00")).await,
        edge
    );
    assert_eq!(
        ids(&mut c, slot, at("2019-12-31T23:59:59Z")).await,
        [EXPIRED]
    );
    assert_eq!(ids(&mut c, slot, at("2020-01-01T00:00:01Z")).await, current);
    assert_eq!(
        ids(&mut c, slot, at("2030-01-01T00:00:00Z")).await,
        [NR, DS, BOTH, NO_KU, NOT_YET, KA]
    );

    // Conditions combine with AND.
    assert_eq!(
        ids(
            &mut c,
            slot,
            json!({"key_usage": "digitalSignature", "valid_at": "2025-06-01T00:00:00Z"})
        )
        .await,
        [DS, BOTH]
    );
    assert_eq!(
        ids(
            &mut c,
            slot,
            json!({"key_usage": "digitalSignature", "valid_at": "2017-01-01T00:00:00Z"})
        )
        .await,
        [EXPIRED]
    );
    assert!(ids(
        &mut c,
        slot,
        json!({"key_usage": "nonRepudiation", "valid_at": "2017-01-01T00:00:00Z"})
    )
    .await
    .is_empty());

    // parse_certs still works with a filter, and agrees with it.
    let parsed = c
        .ok(
            "pkcs11.certificates",
            json!({"slot_id": slot, "parse_certs": true,
                   "filter": {"key_usage": "nonRepudiation", "valid_at": "2025-06-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(sorted_ids(&parsed), [NR, BOTH]);
    for e in parsed.as_array().unwrap() {
        let p = &e["parsed"];
        assert!(p["key_usage"]
            .as_array()
            .unwrap()
            .contains(&json!("nonRepudiation")));
        assert_eq!(p["not_before"], "2020-01-01T00:00:00Z", "{p}");
        assert_eq!(p["not_after"], "2040-01-01T00:00:00Z", "{p}");
    }

    // Through the protocol types.
    let typed = c
        .call_typed::<p::Certificates>(&p::CertificatesParams {
            slot_id: slot,
            parse_certs: Some(true),
            filter: Some(p::CertificateFilter {
                key_usage: Some(p::KeyUsage::DigitalSignature),
                valid_at: Some("2035-01-01T00:00:00Z".into()),
                has_private_key: None,
            }),
            module: None,
        })
        .await
        .unwrap();
    let mut names: Vec<_> = typed
        .iter()
        .map(|e| e.parsed.as_ref().unwrap().common_name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Keyport Filter both",
            "Keyport Filter ds",
            "Keyport Filter not-yet"
        ]
    );

    // The demo token is filtered too: all its certificates say digitalSignature, none
    // nonRepudiation.
    let demo = c.slot_of("keyport-demo").await;
    let demo_all = ["01", "02", "03", "04", "09"];
    assert_eq!(
        ids(&mut c, demo, json!({"key_usage": "digitalSignature"})).await,
        demo_all
    );
    assert!(ids(&mut c, demo, json!({"key_usage": "nonRepudiation"}))
        .await
        .is_empty());
}

#[tokio::test]
async fn has_private_key_follows_what_the_token_shows() {
    let token = &provision_mix();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-empty").await;
    let demo = c.slot_of("keyport-demo").await;
    let hpk = |has: bool| json!({"has_private_key": has});

    // Before login SoftHSM hides private keys (CKA_PRIVATE), so the agent goes by the public
    // keys the token shows (PROTOCOL.md): DS's public key counts, NR's hidden private key does
    // not. The demo token kept no public keys, so none of its certificates passes yet.
    assert_eq!(ids(&mut c, slot, hpk(true)).await, [DS]);
    assert_eq!(
        ids(&mut c, slot, hpk(false)).await,
        [NR, BOTH, NO_KU, EXPIRED, NOT_YET, KA]
    );
    assert!(ids(&mut c, demo, hpk(true)).await.is_empty());
    assert_eq!(
        ids(&mut c, demo, hpk(false)).await,
        ["01", "02", "03", "04", "09"]
    );

    // One signature with NR's key logs the token in (the agent keeps it logged in): from then
    // on its private keys are visible, and they alone count.
    sign(&mut c, slot, NR, &mix_der(token, NR)).await;
    assert_eq!(ids(&mut c, slot, hpk(true)).await, [NR]);
    assert_eq!(
        ids(&mut c, slot, hpk(false)).await,
        [DS, BOTH, NO_KU, EXPIRED, NOT_YET, KA]
    );
    // Login is per token: the demo token still shows nothing.
    assert!(ids(&mut c, demo, hpk(true)).await.is_empty());

    // Combined with the other conditions (AND).
    assert_eq!(
        ids(
            &mut c,
            slot,
            json!({"key_usage": "nonRepudiation", "has_private_key": true})
        )
        .await,
        [NR]
    );
    assert!(ids(
        &mut c,
        slot,
        json!({"key_usage": "digitalSignature", "has_private_key": true})
    )
    .await
    .is_empty());
    assert_eq!(
        ids(
            &mut c,
            slot,
            json!({"key_usage": "nonRepudiation", "valid_at": "2025-06-01T00:00:00Z",
                   "has_private_key": true})
        )
        .await,
        [NR]
    );
    assert!(ids(
        &mut c,
        slot,
        json!({"key_usage": "nonRepudiation", "valid_at": "2045-01-01T00:00:00Z",
               "has_private_key": true})
    )
    .await
    .is_empty());
    assert_eq!(
        ids(
            &mut c,
            slot,
            json!({"key_usage": "digitalSignature", "valid_at": "2025-06-01T00:00:00Z",
                   "has_private_key": false})
        )
        .await,
        [DS, BOTH]
    );

    // The demo token, logged in: its four keys, not the orphan certificate (09).
    sign(&mut c, demo, "02", &token.cert_der("ec-p256")).await;
    assert_eq!(ids(&mut c, demo, hpk(true)).await, ["01", "02", "03", "04"]);
    assert_eq!(ids(&mut c, demo, hpk(false)).await, ["09"]);
}

#[tokio::test]
async fn bad_filters_are_invalid_params_and_not_echoed() {
    let token = &Token::provision();
    let agent = Agent::start(token, &[]);
    let mut c = agent.trusted().await;
    let slot = c.slot_of("keyport-demo").await;
    let sent = [
        "kpSecret7301-not-a-time",
        "2025-06-01",
        "2025-06-01T00:00:00",
        "2025-02-30T00:00:00Z",
        "1748736000",
    ];
    for bad in sent {
        let e = c
            .err(
                "pkcs11.certificates",
                json!({"slot_id": slot, "filter": {"valid_at": bad}}),
                "INVALID_PARAMS",
            )
            .await;
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("`filter.valid_at`"), "{msg}");
        assert!(!e.to_string().contains(bad), "the value is echoed: {e}");
    }
    for usage in ["kpSecretUsage7301", "digital_signature", "NonRepudiation"] {
        let e = c
            .err(
                "pkcs11.certificates",
                json!({"slot_id": slot, "filter": {"key_usage": usage}}),
                "INVALID_PARAMS",
            )
            .await;
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("`filter.key_usage`"), "{msg}");
        assert!(!e.to_string().contains(usage), "the value is echoed: {e}");
    }
    // A misspelt condition.
    let e = c
        .err(
            "pkcs11.certificates",
            json!({"slot_id": slot, "filter": {"keyUsage": "nonRepudiation"}}),
            "INVALID_PARAMS",
        )
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("`key_usage`"),
        "{e}"
    );
    // The agent is fine afterwards, and logged none of it.
    assert_eq!(
        ids(&mut c, slot, json!({"key_usage": "digitalSignature"})).await,
        ["01", "02", "03", "04", "09"]
    );
    let log = agent.log();
    for secret in ["kpSecret7301", "kpSecretUsage7301"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
