//! The contract as an OpenRPC 1.3 document (<https://spec.open-rpc.org>), what `rpc.discover`
//! answers: every method with its by-name params and its result as JSON Schema (from the types in
//! this crate), and the error table. `docs/openrpc.json` is a committed copy (a test fails when
//! it drifts).

use crate::{for_each_method, method, ErrorReason, Method, MethodVisitor};
use serde_json::{json, Map, Value};

/// The OpenRPC version the document follows.
pub const OPENRPC_VERSION: &str = "1.3.2";

/// The document for an agent of version `agent_version`: `info.version` is the protocol's
/// version ([`crate::PROTOCOL_VERSION`]), `x-agent-version` the agent's.
pub fn document(agent_version: &str) -> Value {
    let mut v = Collect {
        methods: Vec::new(),
        schemas: Map::new(),
    };
    for_each_method(&mut v);
    // OpenRPC has no place for what the server sends unasked: an extension names it.
    let slot_event = v.schema::<crate::SlotEventNotification>();
    let errors: Map<String, Value> = ErrorReason::ALL
        .iter()
        .map(|r| {
            (
                r.as_str().to_string(),
                json!({
                    "code": r.code(),
                    "message": r.message(),
                    "data": {"reason": r.as_str()},
                }),
            )
        })
        .collect();
    json!({
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "Keyport",
            "description": "PKCS #11 tokens for web pages, with the person's consent: JSON-RPC 2.0 over a WebSocket on 127.0.0.1. Every error carries data.reason; see components.errors and docs/PROTOCOL.md.",
            "version": crate::PROTOCOL_VERSION,
            "x-agent-version": agent_version,
            "license": {"name": "MIT OR Apache-2.0"},
        },
        "servers": [{"name": "agent", "url": format!("ws://127.0.0.1:{}", crate::DEFAULT_PORT)}],
        "methods": v.methods,
        "x-notifications": [{
            "name": method::SLOT_EVENT,
            "summary": "Sent to a subscriber of pkcs11.subscribeSlotEvents when a token is inserted or removed (a JSON-RPC notification: no id).",
            "params": slot_event,
        }],
        "components": {"schemas": v.schemas, "errors": errors},
    })
}

struct Collect {
    methods: Vec<Value>,
    schemas: Map<String, Value>,
}

impl Collect {
    /// `T`'s schema with its definitions moved to `components.schemas`.
    fn schema<T: schemars::JsonSchema>(&mut self) -> Value {
        let mut schema = schemars::SchemaGenerator::default()
            .into_root_schema_for::<T>()
            .to_value();
        if let Some(defs) = schema
            .as_object_mut()
            .and_then(|o| o.remove("$defs"))
            .and_then(|d| match d {
                Value::Object(m) => Some(m),
                _ => None,
            })
        {
            for (name, mut def) in defs {
                rewrite_refs(&mut def);
                self.schemas.insert(name, def);
            }
        }
        if let Some(o) = schema.as_object_mut() {
            o.remove("$schema");
        }
        rewrite_refs(&mut schema);
        schema
    }
}

/// `#/$defs/X` → `#/components/schemas/X`.
fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{name}");
                }
            }
            o.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

impl MethodVisitor for Collect {
    fn visit<M: Method>(&mut self) {
        // The discovery method is implied by the specification, not listed.
        if M::NAME == method::DISCOVER {
            return;
        }
        let params_schema = self.schema::<M::Params>();
        let required: Vec<&str> = params_schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let params: Vec<Value> = params_schema["properties"]
            .as_object()
            .map(|props| {
                props
                    .iter()
                    .map(|(name, schema)| {
                        let mut p = json!({
                            "name": name,
                            "required": required.contains(&name.as_str()),
                            "schema": schema,
                        });
                        if let Some(d) = schema.get("description") {
                            p["description"] = d.clone();
                        }
                        p
                    })
                    .collect()
            })
            .unwrap_or_default();
        let result = self.schema::<M::Result>();
        // "`pkcs11.info`: the library's description." → "The library's description."
        let doc = M::DOC.trim();
        let summary = doc.split_once("`: ").map_or(doc, |(_, s)| s);
        let summary = summary.replace('\n', " ");
        let mut m = json!({
            "name": M::NAME,
            "paramStructure": "by-name",
            "params": params,
            "result": {"name": format!("{}Result", M::KEY), "schema": result},
        });
        if !summary.is_empty() {
            let mut c = summary.chars();
            let first = c.next().map(|f| f.to_uppercase().collect::<String>());
            m["summary"] = Value::String(first.unwrap_or_default() + c.as_str());
        }
        self.methods.push(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_but_discovery_is_listed_with_its_params() {
        let doc = document("9.9.9");
        assert_eq!(doc["openrpc"], OPENRPC_VERSION);
        assert_eq!(doc["info"]["version"], crate::PROTOCOL_VERSION);
        assert_eq!(doc["info"]["x-agent-version"], "9.9.9");
        let names: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = method::ALL
            .iter()
            .copied()
            .filter(|m| *m != method::DISCOVER)
            .collect();
        assert_eq!(names, want);
        let sign = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == method::SIGN_DATA)
            .unwrap();
        let param = |n: &str| {
            sign["params"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == n)
                .cloned()
                .unwrap_or_else(|| panic!("no param {n}"))
        };
        assert!(
            sign["summary"]
                .as_str()
                .unwrap()
                .starts_with("Sign a digest"),
            "{}",
            sign["summary"]
        );
        assert_eq!(param("slot_id")["required"], true);
        assert_eq!(param("module")["required"], false);
        assert_eq!(param("pin")["required"], false);
        assert_eq!(
            param("pin")["schema"]["anyOf"][0]["$ref"],
            "#/components/schemas/Pin"
        );
        assert_eq!(doc["components"]["schemas"]["Pin"]["type"], "string");
        // References point into the document, never at a $defs it does not have.
        let text = doc.to_string();
        assert!(!text.contains("#/$defs/"), "{text}");
        for (name, _) in doc["components"]["schemas"].as_object().unwrap() {
            assert!(!name.is_empty());
        }
        assert_eq!(
            doc["components"]["errors"]["PIN_INCORRECT"]["code"],
            ErrorReason::PinIncorrect.code()
        );
    }
}
