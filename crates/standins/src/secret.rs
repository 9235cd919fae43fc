//! The stand-ins' secrets (the WorkOS API key, the InsForge JWT secret): values that must not show up in a
//! `{:?}` of the options, since tests and the demo log those freely.

use std::fmt;

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct StandInSecret(String);

impl StandInSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, to compare a presented secret with or to give to a client under test.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StandInSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StandInSecret(\"***\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let secret = StandInSecret::new("sk_test_do_not_show");
        assert!(!format!("{secret:?}").contains("do_not_show"));
        assert_eq!(secret.expose(), "sk_test_do_not_show");
    }
}
