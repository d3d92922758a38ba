//! Optional secrets from 1Password (`op item get ITEM --format json`). Concealed fields
//! are mapped to environment names and handed to compose only through the child's
//! environment: never written to disk, never printed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::process::{Cmd, ProcessError};

/// One item to fetch, with each field's environment names already chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub item: String,
    pub vault: Option<String>,
    /// Field label → the env names it is passed as.
    pub fields: Vec<(String, Vec<String>)>,
}

/// What was fetched: env name → value, and the fields an item lacked.
#[derive(Debug, Default)]
pub struct Fetched {
    pub values: BTreeMap<String, String>,
    pub missing: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the 1Password CLI `op` is not installed")]
    OpMissing,
    #[error("1Password: not signed in (`op signin` first)")]
    NotSignedIn,
    #[error("1Password item `{item}`: {problem}")]
    Item { item: String, problem: String },
    #[error("`op` did not answer within {}s", .0.as_secs())]
    TimedOut(Duration),
}

/// Fetch every item. A field an item lacks is reported in `missing`, not an error:
/// one layout serves items of different eras.
pub fn fetch(items: &[Request], timeout: Duration) -> Result<Fetched, SecretError> {
    let mut out = Fetched::default();
    for item in items {
        let mut cmd = Cmd::new("op")
            .args(["item", "get", &item.item, "--format", "json"])
            .timeout(timeout);
        if let Some(vault) = &item.vault {
            cmd = cmd.args(["--vault", vault]);
        }
        let text = match cmd.output() {
            Err(ProcessError::NotFound { .. }) => return Err(SecretError::OpMissing),
            Err(ProcessError::TimedOut { .. }) => return Err(SecretError::TimedOut(timeout)),
            Err(e) => {
                return Err(SecretError::Item {
                    item: item.item.clone(),
                    problem: e.to_string(),
                });
            }
            Ok(o) if o.success() => o.stdout,
            Ok(o) => {
                let first = o
                    .stderr
                    .trim()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if first.contains("signed in") || first.contains("signin") {
                    return Err(SecretError::NotSignedIn);
                }
                return Err(SecretError::Item {
                    item: item.item.clone(),
                    problem: first,
                });
            }
        };
        let concealed = concealed_fields(&text).map_err(|problem| SecretError::Item {
            item: item.item.clone(),
            problem,
        })?;
        for (label, envs) in &item.fields {
            match concealed.get(label) {
                Some(value) => {
                    for env in envs {
                        out.values.insert(env.clone(), value.clone());
                    }
                }
                None => out.missing.push((item.item.clone(), label.clone())),
            }
        }
    }
    Ok(out)
}

/// Label → value of the concealed fields of an `op item get --format json` document.
pub fn concealed_fields(json: &str) -> Result<BTreeMap<String, String>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("unreadable `op` output: {e}"))?;
    let fields = doc
        .get("fields")
        .and_then(|f| f.as_array())
        .ok_or("`op` output has no `fields`")?;
    Ok(fields
        .iter()
        .filter(|f| f.get("type").and_then(|t| t.as_str()) == Some("CONCEALED"))
        .filter_map(|f| {
            let label = f.get("label")?.as_str()?.to_string();
            let value = f.get("value")?.as_str()?.to_string();
            Some((label, value))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_concealed_fields() {
        let json = r#"{"id":"x","fields":[
            {"id":"a","type":"CONCEALED","label":"db-password","value":"s3cret"},
            {"id":"b","type":"STRING","label":"username","value":"me"},
            {"id":"c","type":"CONCEALED","label":"no-value"}]}"#;
        let f = concealed_fields(json).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f["db-password"], "s3cret");
        assert!(concealed_fields("{}").is_err());
    }

    #[test]
    fn missing_op_is_named() {
        // PATH without `op`: the error says what is missing, never a value.
        let items = vec![Request {
            item: "i".into(),
            vault: None,
            fields: vec![("l".to_string(), vec!["E".to_string()])],
        }];
        if which_op() {
            return;
        }
        assert!(matches!(
            fetch(&items, Duration::from_secs(5)),
            Err(SecretError::OpMissing)
        ));
    }

    fn which_op() -> bool {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("op").is_file()))
    }
}
