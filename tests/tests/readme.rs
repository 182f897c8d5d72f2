//! The README's checkable words against the program: the libraries it names exist on this
//! (Debian) machine, and the binary is the size it says.

use std::path::{Path, PathBuf};

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every absolute path to a shared library (`/….so`, `/….so.N`) in `text`.
fn library_paths(text: &str) -> Vec<String> {
    let in_path = |c: char| c.is_ascii_alphanumeric() || "/._+-".contains(c);
    let mut out: Vec<String> = text
        .split(|c: char| !in_path(c))
        .filter(|w| w.starts_with('/'))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| {
            let name = w.rsplit('/').next().unwrap_or_default();
            name.ends_with(".so") || name.contains(".so.")
        })
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_library_path_the_readme_names_exists_here() {
    let paths = library_paths(&readme());
    // The README names at least OpenSC's and SoftHSM's (the CI installs both packages).
    assert!(
        paths.iter().any(|p| p.ends_with("/opensc-pkcs11.so"))
            && paths.iter().any(|p| p.ends_with("/libsofthsm2.so")),
        "{paths:?}"
    );
    let missing: Vec<&String> = paths.iter().filter(|p| !Path::new(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "the README names libraries that are not here: {missing:?}"
    );
}

#[test]
fn the_path_scanner_finds_library_paths_and_nothing_else() {
    let text = "`--module /usr/lib/a/opensc-pkcs11.so`, (\"PKCS11SPY=/usr/lib/b.so\"), \
                /usr/lib/libc.so.6. Not /usr/share/doc, not lib.so, not /etc/x.sock";
    assert_eq!(
        library_paths(text),
        [
            "/usr/lib/a/opensc-pkcs11.so",
            "/usr/lib/b.so",
            "/usr/lib/libc.so.6"
        ]
    );
}

/// The README's "one ~N MB native binary", in MiB.
fn stated_size_mib(text: &str) -> f64 {
    let at = text
        .find(" MB native binary")
        .expect("the README states the binary's size as \"~N MB native binary\"");
    let before = &text[..at];
    let start = before.rfind('~').expect("~N MB") + 1;
    before[start..].parse().expect("a number before MB")
}

/// The release binary, where `cargo build --release -p keyport` puts it beside these tests'
/// target folder (or KEYPORT_RELEASE_BIN).
fn release_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEYPORT_RELEASE_BIN") {
        return Some(PathBuf::from(p));
    }
    // Tests run from target/debug/deps/.
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    let bin = target.join("release").join("keyport");
    bin.is_file().then_some(bin)
}

#[test]
fn the_binary_is_the_size_the_readme_says() {
    let stated = stated_size_mib(&readme());
    assert!((1.0..100.0).contains(&stated), "{stated}");
    let Some(bin) = release_binary() else {
        eprintln!("no release binary (cargo build --release -p keyport): the size is not checked");
        return;
    };
    let actual = std::fs::metadata(&bin).unwrap().len() as f64 / (1024.0 * 1024.0);
    // "~N MB": within a sixth either way, or about one MiB on ~7–9 MiB.
    assert!(
        (actual - stated).abs() <= stated / 6.0,
        "the README says ~{stated} MB, {} is {actual:.1} MiB: fix the README",
        bin.display()
    );
}

#[test]
fn the_size_reader_reads_the_readmes_phrase() {
    assert_eq!(stated_size_mib("Keyport is one ~9 MB native binary"), 9.0);
    assert_eq!(stated_size_mib("is one ~8.5 MB native binary (no"), 8.5);
}
