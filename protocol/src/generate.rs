//! Generated artefacts of the contract: the TypeScript module of `keyport-client` and the error
//! table of `docs/PROTOCOL.md`. Tests below fail when the committed copies drift; run
//! `KEYPORT_BLESS=1 cargo test -p keyport-protocol` to rewrite them.

use crate::*;
use ts_rs::{Config, TS};

/// The committed TypeScript module, relative to the workspace root.
pub const TYPESCRIPT_PATH: &str = "js-client/src/protocol.ts";
/// The committed protocol document, relative to the workspace root.
pub const PROTOCOL_DOC_PATH: &str = "docs/PROTOCOL.md";
/// The committed OpenRPC document (what `rpc.discover` answers, for the version below).
pub const OPENRPC_PATH: &str = "docs/openrpc.json";

/// The OpenRPC document as committed: pretty JSON for this crate's version.
pub fn openrpc_json() -> String {
    let mut text =
        serde_json::to_string_pretty(&crate::openrpc::document(env!("CARGO_PKG_VERSION")))
            .expect("a JSON value serializes");
    text.push('\n');
    text
}

fn decl<T: TS>(cfg: &Config, out: &mut String) {
    if let Some(docs) = T::docs() {
        out.push_str(&docs);
        if !docs.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str("export ");
    out.push_str(&T::decl(cfg));
    out.push_str("\n\n");
}

/// The TypeScript module `js-client/src/protocol.ts`.
pub fn typescript() -> String {
    // Slot ids and counters are CK_ULONG; JavaScript numbers hold them exactly up to 2^53.
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(
        "// Generated from the Rust crate keyport-protocol. Do not edit by hand:\n\
         // run `KEYPORT_BLESS=1 cargo test -p keyport-protocol` after changing protocol/.\n\
         /* eslint-disable */\n\n",
    );
    out.push_str(&format!("export const DEFAULT_PORT = {DEFAULT_PORT};\n"));
    out.push_str(&format!(
        "/** The native-messaging host's name (the extension's `connectNative`). */\nexport const NATIVE_HOST_NAME = \"{NATIVE_HOST_NAME}\";\n\n"
    ));
    struct Table(Vec<(&'static str, &'static str, String, String)>);
    impl MethodVisitor for Table {
        fn visit<M: Method>(&mut self) {
            let cfg = Config::new().with_large_int("number");
            self.0.push((
                M::NAME,
                M::KEY,
                M::Params::name(&cfg),
                M::Result::name(&cfg),
            ));
        }
    }
    let mut table = Table(Vec::new());
    for_each_method(&mut table);
    out.push_str("/** JSON-RPC method names. */\nexport const METHODS = {\n");
    for (name, key, _, _) in &table.0 {
        out.push_str(&format!("  {key}: \"{name}\",\n"));
    }
    out.push_str("} as const;\n\n");
    out.push_str("/** Every method: the params it takes and the result it answers with. */\n");
    out.push_str("export interface MethodTable {\n");
    for (name, _, params, result) in &table.0 {
        out.push_str(&format!(
            "  \"{name}\": {{ params: {params}; result: {result} }};\n"
        ));
    }
    out.push_str("}\n\n");

    decl::<NoParams>(&cfg, &mut out);
    decl::<ModuleParams>(&cfg, &mut out);
    decl::<TokenParams>(&cfg, &mut out);
    decl::<CertificatesParams>(&cfg, &mut out);
    decl::<AlgorithmReference>(&cfg, &mut out);
    decl::<CertificateFilter>(&cfg, &mut out);
    decl::<KeyUsage>(&cfg, &mut out);
    decl::<SignatureScheme>(&cfg, &mut out);
    decl::<SignatureFormat>(&cfg, &mut out);
    decl::<SignDataParams>(&cfg, &mut out);
    decl::<SignDataBatchParams>(&cfg, &mut out);
    decl::<VerifySignedDataParams>(&cfg, &mut out);
    decl::<InfoResult>(&cfg, &mut out);
    decl::<SlotInfo>(&cfg, &mut out);
    decl::<PinState>(&cfg, &mut out);
    decl::<TokenInfo>(&cfg, &mut out);
    decl::<ParsedCertificate>(&cfg, &mut out);
    decl::<CertificateEntry>(&cfg, &mut out);
    decl::<VersionResult>(&cfg, &mut out);
    decl::<UnsubscribeParams>(&cfg, &mut out);
    decl::<SlotEventKind>(&cfg, &mut out);
    decl::<SlotEvent>(&cfg, &mut out);
    decl::<SlotEventNotification>(&cfg, &mut out);
    decl::<serde_json::Value>(&cfg, &mut out);
    decl::<Door>(&cfg, &mut out);
    decl::<ErrorReason>(&cfg, &mut out);
    decl::<ErrorData>(&cfg, &mut out);

    out.push_str(
        "/** Every `pin_state`, from the best to the worst. */\nexport const PIN_STATES = [",
    );
    let states: Vec<String> = PinState::ALL
        .iter()
        .map(|s| format!("\"{}\"", s.as_str()))
        .collect();
    out.push_str(&states.join(", "));
    out.push_str("] as const satisfies readonly PinState[];\n\n");

    out.push_str("/** The JSON-RPC error code of each reason. */\n");
    out.push_str("export const ERROR_CODES: Record<ErrorReason, number> = {\n");
    for r in ErrorReason::ALL {
        out.push_str(&format!("  {}: {},\n", r.as_str(), r.code()));
    }
    out.push_str("};\n\n/** The agent's default message of each reason. */\n");
    out.push_str("export const ERROR_MESSAGES: Record<ErrorReason, string> = {\n");
    for r in ErrorReason::ALL {
        out.push_str(&format!("  {}: {:?},\n", r.as_str(), r.message()));
    }
    out.push_str("};\n");
    out
}

/// The Markdown error table kept in `docs/PROTOCOL.md`.
pub fn error_table_markdown() -> String {
    let mut out =
        String::from("| code | reason | message | when / what to do |\n|---:|---|---|---|\n");
    for r in ErrorReason::ALL {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            r.code(),
            r.as_str(),
            r.message(),
            r.help().replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn bless() -> bool {
        std::env::var_os("KEYPORT_BLESS").is_some()
    }

    #[test]
    fn typescript_module_is_up_to_date() {
        let path = root().join(TYPESCRIPT_PATH);
        let want = typescript();
        if bless() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{TYPESCRIPT_PATH} drifted from protocol/: run KEYPORT_BLESS=1 cargo test -p keyport-protocol"
        );
    }

    #[test]
    fn openrpc_document_is_up_to_date() {
        let path = root().join(OPENRPC_PATH);
        let want = openrpc_json();
        if bless() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{OPENRPC_PATH} drifted from protocol/: run KEYPORT_BLESS=1 cargo test -p keyport-protocol"
        );
    }

    #[test]
    fn protocol_doc_carries_the_error_table() {
        const BEGIN: &str = "<!-- error-table:begin -->\n";
        const END: &str = "<!-- error-table:end -->";
        let path = root().join(PROTOCOL_DOC_PATH);
        let doc = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = doc.split_once(BEGIN).expect("error-table:begin marker");
        let (_, tail) = rest.split_once(END).expect("error-table:end marker");
        let want = format!("{head}{BEGIN}{}{END}{tail}", error_table_markdown());
        if bless() {
            std::fs::write(&path, &want).unwrap();
        }
        assert!(
            std::fs::read_to_string(&path).unwrap() == want,
            "{PROTOCOL_DOC_PATH}'s error table drifted: run KEYPORT_BLESS=1 cargo test -p keyport-protocol"
        );
        for m in method::ALL {
            assert!(doc.contains(m), "{PROTOCOL_DOC_PATH} does not document {m}");
        }
    }
}
