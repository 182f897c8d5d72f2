//! A real PC/SC stack for the end-to-end tests: a private pcscd with the vpcd virtual reader
//! and `pgpcard.py`'s OpenPGP card, read through OpenSC's PKCS #11 module (see
//! `tests/pcsc/README.md`). Started by `tests/pcsc/start.sh` in a temporary folder, stopped on
//! drop by `tests/pcsc/stop.sh`.
//!
//! Needs root (pcscd runs in its own mount and network namespace, made by `unshare`) and the
//! Debian packages listed in the README. Where it cannot run, [`PcscStack::start`] panics with
//! the reason: a test of the real smart-card path must fail, not pass quietly, on a machine
//! that cannot run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// OpenSC's PKCS #11 module (Debian's `opensc-pkcs11`).
pub const OPENSC: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
/// What pcscd calls the vpcd reader's slots (`Virtual PCD 00 00`, `Virtual PCD 00 01`).
pub const READER: &str = "Virtual PCD";
/// The OpenPGP card's PINs (pgpcard.py's defaults).
pub const USER_PIN: &str = "123456";
pub const ADMIN_PIN: &str = "12345678";
/// The labels OpenSC gives the card's two tokens: the first holds the authentication key
/// (ID 03) and the cardholder certificate (stored as ID 03), the second the signature key (01).
pub const USER_TOKEN: &str = "OpenPGP card (User PIN)";
pub const SIG_TOKEN: &str = "OpenPGP card (User PIN (sig))";

/// Debian packages the stack needs (for the message when it cannot start).
const PACKAGES: &str =
    "pcscd vsmartcard-vpcd opensc python3-pycryptodome iproute2 util-linux mount openssl";

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pcsc")
}

/// A private pcscd + vpcd reader; the card is inserted and removed with
/// [`PcscStack::insert_openpgp`] and [`PcscStack::remove_card`]. Everything stops on drop.
pub struct PcscStack {
    /// The temporary folder; start.sh's DIR is its `pcsc` subfolder.
    pub tmp: tempfile::TempDir,
}

impl PcscStack {
    /// Start pcscd with the vpcd reader (no card yet). Panics, saying why, where it cannot.
    pub fn start() -> PcscStack {
        let euid = effective_uid();
        assert!(
            euid == Some(0),
            "the PC/SC tests need root (pcscd runs in its own mount and network namespace, made \
             with `unshare`; CI runs as root): effective uid is {euid:?}"
        );
        for tool in [
            "unshare",
            "nsenter",
            "ip",
            "pcscd",
            "opensc-tool",
            "pkcs11-tool",
        ] {
            assert!(
                on_path(tool),
                "the PC/SC tests need `{tool}` on PATH (Debian packages: {PACKAGES})"
            );
        }
        assert!(
            Path::new(OPENSC).exists(),
            "the PC/SC tests need {OPENSC} (Debian package opensc-pkcs11)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let stack = PcscStack { tmp };
        let out = Command::new(scripts().join("start.sh"))
            .arg(stack.dir())
            .output()
            .expect("run tests/pcsc/start.sh");
        assert!(
            out.status.success(),
            "tests/pcsc/start.sh failed ({}):\n{}{}\npcscd.log:\n{}\n(Debian packages: {PACKAGES})",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            stack.log_tail("pcscd.log", 30)
        );
        stack
    }

    /// start.sh's DIR.
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("pcsc")
    }

    /// The private pcscd's socket: a PC/SC client started with `PCSCLITE_CSOCK_NAME` set to it
    /// talks to this pcscd.
    pub fn socket(&self) -> String {
        self.dir()
            .join("run/pcscd/pcscd.comm")
            .to_str()
            .expect("temporary paths are UTF-8")
            .to_string()
    }

    /// The environment a PC/SC client needs to reach this stack.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("PCSCLITE_CSOCK_NAME", self.socket())]
    }

    fn card(&self, args: &[&str]) {
        let out = Command::new(scripts().join("card.sh"))
            .arg(self.dir())
            .args(args)
            .output()
            .expect("run tests/pcsc/card.sh");
        assert!(
            out.status.success(),
            "tests/pcsc/card.sh {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    /// Insert the OpenPGP card (its keys and certificate persist across removals); returns
    /// once pcscd sees it.
    pub fn insert_openpgp(&self) {
        self.card(&["start", "openpgp"]);
    }

    /// Remove the card; returns once pcscd no longer sees it.
    pub fn remove_card(&self) {
        self.card(&["stop"]);
    }

    /// Run an OpenSC tool (or any PC/SC client) against this stack; panics if it fails.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        let out = Command::new(program)
            .args(args)
            .envs(self.env())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        out
    }

    /// With the card inserted: generate an RSA-2048 authentication key (ID 03, on the
    /// [`USER_TOKEN`]) and store a certificate for it (ID 03, the card's cardholder
    /// certificate, on the same token). The certificate carries the card's public key but is
    /// signed by a throwaway key (`openssl x509 -force_pubkey`): nothing needs the card's
    /// private key to make it. Returns the certificate (DER).
    pub fn provision_openpgp(&self) -> Vec<u8> {
        let work = self.tmp.path().join("provision");
        std::fs::create_dir_all(&work).unwrap();
        let p = |name: &str| work.join(name).to_str().unwrap().to_string();
        let token = ["--module", OPENSC, "--token-label", USER_TOKEN];
        let admin = ["--login", "--login-type", "so", "--so-pin", ADMIN_PIN];
        self.tool(
            "pkcs11-tool",
            &[
                &token[..],
                &admin[..],
                &["--keypairgen", "--key-type", "rsa:2048", "--id", "03"],
            ]
            .concat(),
        );
        self.tool(
            "pkcs11-tool",
            &[
                &token[..],
                &[
                    "--read-object",
                    "--type",
                    "pubkey",
                    "--id",
                    "03",
                    "-o",
                    &p("pub.der"),
                ],
            ]
            .concat(),
        );
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "pkey",
            "-pubin",
            "-inform",
            "DER",
            "-in",
            &p("pub.der"),
            "-out",
            &p("pub.pem"),
        ]);
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &p("issuer.pem"),
        ]);
        openssl(&[
            "req",
            "-new",
            "-key",
            &p("issuer.pem"),
            "-subj",
            "/CN=Keyport PC-SC test",
            "-out",
            &p("req.csr"),
        ]);
        std::fs::write(
            p("ext.cnf"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("req.csr"),
            "-signkey",
            &p("issuer.pem"),
            "-force_pubkey",
            &p("pub.pem"),
            "-extfile",
            &p("ext.cnf"),
            "-days",
            "3650",
            "-outform",
            "DER",
            "-out",
            &p("cert.der"),
        ]);
        self.tool(
            "pkcs11-tool",
            &[
                &token[..],
                &admin[..],
                &[
                    "--write-object",
                    &p("cert.der"),
                    "--type",
                    "cert",
                    "--id",
                    "03",
                ],
            ]
            .concat(),
        );
        std::fs::read(p("cert.der")).unwrap()
    }

    /// The last `lines` lines of a log in start.sh's DIR (`pcscd.log`, `vicc.log`).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir().join(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// pcscd's and the card's recent log lines, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "pcscd.log (last 20 lines):\n{}\nvicc.log (last 20 lines):\n{}",
            self.log_tail("pcscd.log", 20),
            self.log_tail("vicc.log", 20)
        )
    }
}

impl Drop for PcscStack {
    fn drop(&mut self) {
        let _ = Command::new(scripts().join("stop.sh"))
            .arg(self.dir())
            .output();
    }
}

/// The effective uid of this process (from `/proc/self/status`).
fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
