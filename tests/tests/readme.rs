//! The README's checkable words against the program: the libraries it names exist on this
//! (Debian) machine.

use std::path::Path;

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
