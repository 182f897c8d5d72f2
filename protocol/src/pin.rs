//! The PIN type: redacted in `Debug`, zeroized on drop.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A user PIN as it arrives in `pkcs11.signData`.
///
/// `Debug` prints `Pin(***)`, never the value; the buffer is zeroized when the value is dropped.
/// Use [`Pin::expose`] only at the point where the PIN is handed to the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct Pin(String);

impl Pin {
    pub fn new(pin: impl Into<String>) -> Self {
        Pin(pin.into())
    }

    /// The PIN's text, for the call that logs in.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl schemars::JsonSchema for Pin {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Pin".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "The user PIN. Never logged, never echoed, zeroized after the call."
        })
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_pin() {
        let pin = Pin::new("987654");
        assert_eq!(format!("{pin:?}"), "Pin(***)");
        assert!(!format!("{:?}", Some(&pin)).contains("987654"));
    }
}
