//! Where settings and environment secrets are read from: the process environment, or a fixed
//! set of variables (tests, embedding) so that nothing has to mutate the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A read-only view of environment variables.
#[derive(Clone)]
pub struct Variables {
    /// `None` reads the process environment on every lookup (so a re-read sees changes).
    fixed: Option<Arc<BTreeMap<String, Zeroizing<String>>>>,
}

impl Variables {
    /// The process environment, read at each lookup.
    pub fn process() -> Self {
        Self { fixed: None }
    }

    /// A fixed set of variables; the process environment is not consulted.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map = pairs
            .into_iter()
            .map(|(name, value)| (name.into(), Zeroizing::new(value.into())))
            .collect();
        Self {
            fixed: Some(Arc::new(map)),
        }
    }

    /// The value of `name`; `None` when unset (or, in the process environment, not UTF-8).
    pub fn get(&self, name: &str) -> Option<Zeroizing<String>> {
        match &self.fixed {
            None => std::env::var(name).ok().map(Zeroizing::new),
            Some(map) => map.get(name).cloned(),
        }
    }

    /// The value of `name`, `None` when unset or blank.
    pub fn non_blank(&self, name: &str) -> Option<Zeroizing<String>> {
        self.get(name).filter(|value| !value.trim().is_empty())
    }

    /// A secret setting: `name`, or the content of the file named by `name_FILE` without its
    /// trailing line break (mounted secrets). Both set is an error; the `Err` is the reason,
    /// which names the variables and never the value.
    pub(crate) fn secret(&self, name: &str) -> Result<Option<Zeroizing<String>>, String> {
        let file_variable = format!("{name}_FILE");
        match (self.get(name), self.get(&file_variable)) {
            (Some(_), Some(_)) => Err(format!(
                "both {name} and {file_variable} are set; set only one"
            )),
            (Some(value), None) => Ok(Some(value)),
            (None, Some(path)) => {
                let content =
                    Zeroizing::new(std::fs::read_to_string(path.as_str()).map_err(|e| {
                        // The path is not a secret (the file's content is): naming it is what
                        // lets an operator fix a wrong mount.
                        format!(
                            "cannot read {} (named by {file_variable}): {}",
                            path.as_str(),
                            e.kind()
                        )
                    })?);
                // Mounted files usually end with a newline that is not part of the secret.
                Ok(Some(Zeroizing::new(
                    content.trim_end_matches(['\n', '\r']).to_owned(),
                )))
            }
            (None, None) => Ok(None),
        }
    }
}

impl Default for Variables {
    fn default() -> Self {
        Self::process()
    }
}

/// Shows where variables come from and, for a fixed set, their names only.
impl fmt::Debug for Variables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fixed {
            None => f.write_str("Variables(process environment)"),
            Some(map) => f
                .debug_tuple("Variables")
                .field(&map.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}
