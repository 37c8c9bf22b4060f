//! `SECRET_MANAGER_KEY_MAPPING`: renames secrets before any provider looks them up.

use std::collections::HashMap;

use user_service_domain::ports::SecretSourceError;

use crate::variables::Variables;

/// Variable holding the JSON object that renames secrets, for every provider.
const KEY_MAPPING_VARIABLE: &str = "SECRET_MANAGER_KEY_MAPPING";

/// Renames secret names (`{"JWT_SECRET": "AUTH_JWT_SECRET"}`); names it does not list are
/// looked up as they are. Holds names only, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMapping(HashMap<String, String>);

impl KeyMapping {
    /// A mapping from a JSON object of strings; blank text is the empty mapping.
    pub fn parse(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(json)
            .map(Self)
            .map_err(|e| format!("not a JSON object of strings ({e})"))
    }

    /// A mapping from `(name, renamed)` pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self(
            pairs
                .into_iter()
                .map(|(name, renamed)| (name.into(), renamed.into()))
                .collect(),
        )
    }

    /// The name to look up for `name`.
    pub fn apply<'a>(&'a self, name: &'a str) -> &'a str {
        self.0.get(name).map_or(name, String::as_str)
    }

    /// The mapping of `SECRET_MANAGER_KEY_MAPPING`; errors are reported as `provider`'s.
    pub(crate) fn from_variables(
        variables: &Variables,
        provider: &'static str,
    ) -> Result<Self, SecretSourceError> {
        let json = variables.get(KEY_MAPPING_VARIABLE).unwrap_or_default();
        Self::parse(&json).map_err(|reason| SecretSourceError {
            provider: provider.into(),
            key: KEY_MAPPING_VARIABLE.into(),
            reason,
        })
    }
}
