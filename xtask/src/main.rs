//! Build chores, run with `cargo run -p xtask -- COMMAND`.
//!
//! `dist-assets DIR` writes what the packages ship besides the binary, generated from the real
//! command-line definition ([`keyport::config::Cli`]) so that they follow every flag and
//! subcommand:
//! * `keyport.1` and one `keyport-SUBCOMMAND.1` per subcommand (roff, by clap_mangen), each also
//!   as `.1.gz` (gzip at maximum compression, no name or time in the header: reproducible);
//! * shell completions (clap_complete): `keyport.bash`, `_keyport` (zsh), `keyport.fish`;
//! * the browsers' native-messaging host manifests for `/usr/bin/keyport`, rendered by
//!   [`keyport::native_host::manifest`] (the one renderer): `native-messaging/chromium/` (Chromium,
//!   Chrome, Edge, Brave) and `native-messaging/firefox/`, each `org.keyport.agent.json`.

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use flate2::{Compression, GzBuilder};
use keyport::native_host::manifest;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "xtask", about = "Keyport's build chores")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Write the man pages and shell completions into DIR (created if missing).
    DistAssets {
        /// Output folder, e.g. target/dist-assets.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Args::parse().task {
        Task::DistAssets { dir } => dist_assets(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn dist_assets(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    remove_old_man_pages(dir)?;
    let mut cmd = keyport::config::Cli::command();
    cmd.build();
    let name = cmd.get_name().to_string();
    let mut written = Vec::new();

    // Man pages: the command, then each subcommand (`keyport doctor` → keyport-doctor.1). The
    // generated `help` subcommand gets no page (`keyport help` is `--help`), nor a mention.
    let mut man_cmd = keyport::config::Cli::command().disable_help_subcommand(true);
    man_cmd.build();
    let subcommands: Vec<String> = man_cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("{name}-{}", s.get_name()))
        .collect();
    written.extend(man_page(
        dir,
        &name,
        man_cmd.clone(),
        &main_page_sections(&subcommands),
    )?);
    for sub in man_cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap takes only `&'static str` names here (without its `string` feature): this
        // short-lived program leaks a few.
        let page: &'static str = format!("{name}-{}", sub.get_name()).leak();
        let version: &'static str = cmd.get_version().unwrap_or_default().to_string().leak();
        let sub = sub
            .clone()
            .name(page)
            .display_name(page)
            .bin_name(format!("{name} {}", sub.get_name()))
            .version(version);
        let see_also = format!(".SH \"SEE ALSO\"\n\\fB{}\\fR(1)\n", roff_escape(&name));
        written.extend(man_page(dir, page, sub, &see_also)?);
    }

    // Completions, under the names the packages install them as (or near them).
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut buf);
        let path = dir.join(file);
        write(&path, &buf)?;
        written.push(path);
    }

    // The host manifests the packages install in each browser's system folder.
    for (family, name) in [
        (manifest::Family::Chromium, "chromium"),
        (manifest::Family::Firefox, "firefox"),
    ] {
        let text = manifest::render(family, Path::new(INSTALLED_BINARY))?;
        let folder = dir.join("native-messaging").join(name);
        fs::create_dir_all(&folder)
            .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
        let path = folder.join(manifest::FILE_NAME);
        write(&path, text.as_bytes())?;
        written.push(path);
    }

    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Where the packages install the binary (the host manifests' `path`).
const INSTALLED_BINARY: &str = "/usr/bin/keyport";

/// FILES, ENVIRONMENT and SEE ALSO of `keyport.1` (roff): where the packages put things.
fn main_page_sections(subcommands: &[String]) -> String {
    let mut out = String::from(".SH FILES\n");
    for (path, what) in [
        (
            "/etc/keyport/keyport.toml",
            "The administrator's settings (policy); every key is commented out as shipped.",
        ),
        (
            "$XDG_CONFIG_HOME/keyport/keyport.toml",
            "The person's settings (~/.config/keyport/keyport.toml by default).",
        ),
        (
            "$XDG_STATE_HOME/keyport/state.json",
            "The sites the person chose to always allow (~/.local/state/keyport/state.json by \
             default); with the tray icon, the log keyport.log is written beside it.",
        ),
        (
            "/etc/xdg/autostart/keyport.desktop",
            "Starts the agent when a graphical session starts (the default).",
        ),
        (
            "/etc/chromium/native-messaging-hosts/org.keyport.agent.json",
            "How Chromium and Brave start keyport as the Keyport extension's native-messaging \
             host (the same file in /etc/opt/chrome and /etc/opt/edge for Google Chrome and \
             Microsoft Edge).",
        ),
        (
            "/usr/lib/mozilla/native-messaging-hosts/org.keyport.agent.json",
            "The same for Firefox.",
        ),
        (
            "$XDG_STATE_HOME/keyport/native-host.log",
            "What the native-messaging hosts log (every host appends; capped and rotated once).",
        ),
        (
            "/usr/lib/systemd/user/keyport.service",
            "The alternative: a systemd user service, disabled as shipped \
             (systemctl --user enable --now keyport.service).",
        ),
    ] {
        out.push_str(&format!(
            ".TP\n\\fI{}\\fR\n{}\n",
            roff_escape(path),
            roff_escape(what)
        ));
    }
    out.push_str(".SH ENVIRONMENT\n.TP\n\\fBRUST_LOG\\fR\n");
    out.push_str(&roff_escape(
        "How much the agent logs to stderr, e.g. RUST_LOG=debug (PINs are never logged).",
    ));
    out.push_str("\n.SH \"SEE ALSO\"\n");
    let mut refs: Vec<String> = subcommands
        .iter()
        .map(|page| format!("\\fB{}\\fR(1)", roff_escape(page)))
        .collect();
    refs.push("\\fBpinentry\\fR(1)".into());
    out.push_str(&refs.join(", "));
    out.push_str("\n.PP\n");
    out.push_str(&roff_escape(
        "/usr/share/doc/keyport/README.md: every setting, the security model, the wire protocol.",
    ));
    out.push('\n');
    out
}

/// Text for a roff line: backslashes and hyphens escaped, no control character at its start.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Writes `PAGE.1` and `PAGE.1.gz`; returns their paths. `extra` (roff) goes before VERSION.
fn man_page(dir: &Path, page: &str, cmd: clap::Command, extra: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(page.to_uppercase())
        .section("1")
        .manual("Keyport Manual")
        .source(format!("Keyport {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .map_err(|e| format!("cannot render the man page {page}: {e}"))?;
    let mut roff = String::from_utf8(out).map_err(|e| e.to_string())?;
    match roff.find("\n.SH VERSION") {
        Some(at) => roff.insert_str(at + 1, extra),
        None => roff.push_str(extra),
    }
    let roff = roff.into_bytes();
    let plain = dir.join(format!("{page}.1"));
    write(&plain, &roff)?;
    let gz = dir.join(format!("{page}.1.gz"));
    write(&gz, &gzip(&roff)?)?;
    Ok(vec![plain, gz])
}

/// gzip -9n: maximum compression, no file name or time stamp in the header.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(data).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Pages of subcommands since removed must not be packaged: clear every `keyport*.1[.gz]`.
fn remove_old_man_pages(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("keyport") && (name.ends_with(".1") || name.ends_with(".1.gz")) {
            fs::remove_file(entry.path())
                .map_err(|e| format!("cannot remove {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}
