//! The binary's command line: bad settings are refused with a clear message and exit code 2.

use std::process::Command;

fn keyport(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyport"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn refuses_non_loopback_addresses_and_bad_origins() {
    let out = keyport(&["--listen", "0.0.0.0:10443", "--no-tray"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = keyport(&["--allow-origin", "*", "--no-tray"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid origin"));
}

#[test]
fn refuses_a_config_file_with_unknown_keys() {
    let dir = std::env::temp_dir().join(format!("keyport-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("k.toml");
    std::fs::write(&file, "listn = \"127.0.0.1:1\"\n").unwrap();
    let out = keyport(&["--config", file.to_str().unwrap(), "--no-tray"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listn"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn help_lists_the_flags() {
    let out = keyport(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--module",
        "--allow-origin",
        "--trust-origin",
        "--config",
        "--no-origin",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
