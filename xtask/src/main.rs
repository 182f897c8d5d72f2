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
    let roff = render_man(page, cmd, extra)?;
    let plain = dir.join(format!("{page}.1"));
    write(&plain, &roff)?;
    let gz = dir.join(format!("{page}.1.gz"));
    write(&gz, &gzip(&roff)?)?;
    Ok(vec![plain, gz])
}

/// The page `page` of `cmd` (roff), with `extra` before VERSION and our own SYNOPSIS.
fn render_man(page: &str, mut cmd: clap::Command, extra: &str) -> Result<Vec<u8>> {
    cmd.build();
    let synopsis_line = synopsis(&cmd);
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(page.to_uppercase())
        .section("1")
        .manual("Keyport Manual")
        .source(format!("Keyport {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .map_err(|e| format!("cannot render the man page {page}: {e}"))?;
    let mut roff = String::from_utf8(out).map_err(|e| e.to_string())?;
    // clap_mangen's SYNOPSIS names the flags without their values (`[--listen]` for
    // `--listen ADDR`): ours replaces its body.
    let head = "\n.SH SYNOPSIS\n";
    let start = roff
        .find(head)
        .map(|at| at + head.len())
        .ok_or_else(|| format!("the man page {page} has no SYNOPSIS"))?;
    let end = roff[start..]
        .find("\n.SH ")
        .map_or(roff.len(), |at| start + at + 1);
    roff.replace_range(start..end, &format!("{synopsis_line}\n"));
    match roff.find("\n.SH VERSION") {
        Some(at) => roff.insert_str(at + 1, extra),
        None => roff.push_str(extra),
    }
    Ok(roff.into_bytes())
}

/// The SYNOPSIS line of a built `cmd` (roff): each visible flag with its value names
/// (`[--listen ADDR]`, `[--module PATH]...` when it repeats), the positionals, the commands.
fn synopsis(cmd: &clap::Command) -> String {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut parts = vec![format!("\\fB{}\\fR", roff_escape(name))];
    let italic = |text: &str| format!("\\fI{}\\fR", roff_escape(text));
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let values = || -> String {
            match arg.get_value_names() {
                Some(names) => names
                    .iter()
                    .map(|n| italic(n))
                    .collect::<Vec<_>>()
                    .join(" "),
                None => italic(&arg.get_id().as_str().to_uppercase()),
            }
        };
        let mut text = match (arg.get_short(), arg.get_long()) {
            (Some(s), Some(l)) => format!(
                "\\fB\\-{}\\fR|\\fB\\-\\-{}\\fR",
                roff_escape(&s.to_string()),
                roff_escape(l)
            ),
            (Some(s), None) => format!("\\fB\\-{}\\fR", roff_escape(&s.to_string())),
            (None, Some(l)) => format!("\\fB\\-\\-{}\\fR", roff_escape(l)),
            (None, None) => values(),
        };
        let is_flag = arg.get_short().is_some() || arg.get_long().is_some();
        if is_flag && arg.get_action().takes_values() {
            text = format!("{text} {}", values());
        }
        if !arg.is_required_set() {
            text = format!("[{text}]");
        }
        if matches!(
            arg.get_action(),
            clap::ArgAction::Append | clap::ArgAction::Count
        ) {
            text.push_str("...");
        }
        parts.push(text);
    }
    if cmd.has_subcommands() {
        let word = italic(cmd.get_subcommand_value_name().unwrap_or("COMMAND"));
        parts.push(if cmd.is_subcommand_required_set() {
            word
        } else {
            format!("[{word}]")
        });
    }
    parts.join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(page: &str, cmd: clap::Command) -> String {
        String::from_utf8(render_man(page, cmd, "").unwrap()).unwrap()
    }

    fn synopsis_of(roff: &str) -> &str {
        let start = roff.find(".SH SYNOPSIS\n").unwrap() + ".SH SYNOPSIS\n".len();
        let end = start + roff[start..].find("\n.SH ").unwrap();
        &roff[start..end]
    }

    #[test]
    fn the_synopsis_names_each_flags_value() {
        let mut cmd = keyport::config::Cli::command().disable_help_subcommand(true);
        cmd.build();
        let roff = page_of("keyport", cmd.clone());
        let line = synopsis_of(&roff);
        assert!(line.starts_with("\\fBkeyport\\fR "), "{line}");
        for expected in [
            "[\\fB\\-\\-listen\\fR \\fIADDR\\fR]",
            "[\\fB\\-\\-module\\fR \\fIPATH\\fR]...",
            "[\\fB\\-\\-consent\\fR \\fIUI\\fR]",
            "[\\fB\\-\\-state\\-file\\fR \\fIFILE\\fR]",
            // A flag without a value stays bare.
            "[\\fB\\-\\-no\\-tray\\fR]",
            "[\\fICOMMAND\\fR]",
        ] {
            assert!(line.contains(expected), "{expected} not in {line}");
        }
        assert!(!line.contains("\\-\\-listen\\fR]"), "{line}");
        // Only the SYNOPSIS changed: the options are still described below it.
        assert!(roff.contains(".SH OPTIONS"), "{roff}");

        // A subcommand's page: the global flags with their values too, under its own name.
        let doctor = cmd.find_subcommand("doctor").unwrap().clone();
        let doctor = doctor.bin_name("keyport doctor");
        let roff = page_of("keyport-doctor", doctor);
        let line = synopsis_of(&roff);
        assert!(line.starts_with("\\fBkeyport doctor\\fR "), "{line}");
        assert!(
            line.contains("[\\fB\\-\\-module\\fR \\fIPATH\\fR]..."),
            "{line}"
        );
    }
}
