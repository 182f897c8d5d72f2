//! For the Windows target only: a token directory for the tests, provisioned here on the build
//! machine (tests/soft-token/provision.sh, openssl), because the tests run under Wine, where
//! neither bash nor openssl can be started. The tests find it through
//! `KEYPORT_SOFT_TOKEN_FIXTURE_BUILT` (compiled in) and copy it before each use. On Linux the
//! tests run provision.sh themselves. A build machine without openssl gets a warning, and the
//! Windows tests then fail saying why.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=provision.sh");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let (Some(out), Some(manifest)) = (
        std::env::var_os("OUT_DIR"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        return;
    };
    let fixture = PathBuf::from(out).join("fixture");
    let script = PathBuf::from(manifest).join("provision.sh");
    match Command::new("bash").arg(&script).arg(&fixture).status() {
        Ok(s) if s.success() => println!(
            "cargo:rustc-env=KEYPORT_SOFT_TOKEN_FIXTURE_BUILT={}",
            fixture.display()
        ),
        other => println!(
            "cargo:warning=provision.sh failed ({other:?}): the Windows tests of the soft token \
             will have no token directory"
        ),
    }
}
