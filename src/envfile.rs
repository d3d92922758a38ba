//! The instance env file (`.env.sandbox`): sorted `KEY=VALUE` lines that a POSIX shell
//! can `source`, and a forgiving reader whose errors name the file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::process::shell_quote;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("cannot read `{}`: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` line {line}: expected `KEY=VALUE`, found `{text}`", .path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("`{}` line {line}: `{key}` {problem}", .path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        problem: String,
    },
    #[error("`{}` has no `{key}`", .path.display())]
    Missing { path: PathBuf, key: String },
}

/// Render pairs as the env file's text: sorted by key (byte order), one per line.
pub fn render(vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, value) in vars {
        out.push_str(key);
        out.push('=');
        out.push_str(&shell_quote_value(value));
        out.push('\n');
    }
    out
}

fn shell_quote_value(value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    shell_quote(value)
}

/// One parsed assignment and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub value: String,
    pub line: usize,
}

/// A parsed env file.
#[derive(Debug, Clone)]
pub struct EnvFile {
    pub path: PathBuf,
    pub vars: BTreeMap<String, EnvVar>,
}

impl EnvFile {
    pub fn load(path: &Path) -> Result<EnvFile, EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Blank and `#` lines skipped; optional `export `; split at the first `=`; key and
    /// value trimmed; one pair of matching surrounding quotes removed.
    pub fn parse(path: &Path, text: &str) -> Result<EnvFile, EnvError> {
        let mut vars = BTreeMap::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").map_or(line, str::trim_start);
            let Some((key, value)) = line.split_once('=') else {
                return Err(EnvError::Syntax {
                    path: path.to_owned(),
                    line: idx + 1,
                    text: raw.chars().take(80).collect(),
                });
            };
            let key = key.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(EnvError::Syntax {
                    path: path.to_owned(),
                    line: idx + 1,
                    text: raw.chars().take(80).collect(),
                });
            }
            vars.insert(
                key.to_string(),
                EnvVar {
                    value: unquote(value.trim()),
                    line: idx + 1,
                },
            );
        }
        Ok(EnvFile {
            path: path.to_owned(),
            vars,
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(|v| v.value.as_str())
    }

    pub fn require(&self, key: &str) -> Result<&str, EnvError> {
        self.get(key).ok_or_else(|| EnvError::Missing {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    /// A required integer within `range`, or an error naming file, line and key.
    pub fn require_number(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<u32, EnvError> {
        let var = self.vars.get(key).ok_or_else(|| EnvError::Missing {
            path: self.path.clone(),
            key: key.to_string(),
        })?;
        let invalid = |problem: String| EnvError::Invalid {
            path: self.path.clone(),
            line: var.line,
            key: key.to_string(),
            problem,
        };
        let n: u32 = var
            .value
            .parse()
            .map_err(|_| invalid(format!("is not a number: `{}`", var.value)))?;
        if !range.contains(&n) {
            return Err(invalid(format!(
                "is {n}, outside {}..={}",
                range.start(),
                range.end()
            )));
        }
        Ok(n)
    }

    /// A required TCP port (1..=65535).
    pub fn require_port(&self, key: &str) -> Result<u16, EnvError> {
        self.require_number(key, 1..=65_535).map(|n| n as u16)
    }

    /// Plain key → value pairs, for a child process environment.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2 {
        let (first, last) = (bytes[0], bytes[bytes.len() - 1]);
        if first == last && (first == b'"' || first == b'\'') {
            let inner = &value[1..value.len() - 1];
            // Undo our own single-quote escaping ('\'') so values round-trip.
            return if first == b'\'' {
                inner.replace(r"'\''", "'")
            } else {
                inner.to_string()
            };
        }
    }
    value.to_string()
}

/// Write the file atomically (temp file beside it, fsync, rename).
pub fn save(path: &Path, vars: &BTreeMap<String, String>) -> std::io::Result<()> {
    crate::fsutil::write_atomically(path, render(vars).as_bytes())
}

impl crate::error::Diagnostic for EnvError {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Failure
    }

    fn hint(&self) -> Option<String> {
        Some("fix the line by hand, or run `kinfra doctor` to compare it with the registry".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EnvFile, EnvError> {
        EnvFile::parse(Path::new("/x/.env.sandbox"), text)
    }

    #[test]
    fn renders_sorted_and_quotes_only_when_needed() {
        let mut vars = BTreeMap::new();
        vars.insert("B".to_string(), "2".to_string());
        vars.insert("A".to_string(), "/home/me/x".to_string());
        vars.insert("C".to_string(), "/home/my dir/it's".to_string());
        vars.insert(
            "D".to_string(),
            "2026-01-20T16:29:14.123456+00:00".to_string(),
        );
        assert_eq!(
            render(&vars),
            "A=/home/me/x\nB=2\nC='/home/my dir/it'\\''s'\nD=2026-01-20T16:29:14.123456+00:00\n"
        );
    }

    #[test]
    fn round_trips() {
        let mut vars = BTreeMap::new();
        vars.insert("PATHY".to_string(), "/a b/c'd/é".to_string());
        vars.insert("PORT".to_string(), "8001".to_string());
        vars.insert("EMPTY".to_string(), String::new());
        let back = parse(&render(&vars)).unwrap().to_map();
        assert_eq!(back, vars);
    }

    #[test]
    fn rendered_file_is_shell_sourceable() {
        let mut vars = BTreeMap::new();
        vars.insert("X".to_string(), "/a b/c'd".to_string());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, render(&vars)).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(". '{}'; printf %s \"$X\"", file.display()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/a b/c'd");
    }

    #[test]
    fn reader_accepts_comments_export_and_quotes() {
        let env =
            parse("# comment\n\nexport A=1\n  B = \"two words\" \nC='x'\nD=a=b\nE=\"unmatched'\n")
                .unwrap();
        assert_eq!(env.get("A"), Some("1"));
        assert_eq!(env.get("B"), Some("two words"));
        assert_eq!(env.get("C"), Some("x"));
        assert_eq!(env.get("D"), Some("a=b"));
        assert_eq!(env.get("E"), Some("\"unmatched'"));
        assert_eq!(env.vars["B"].line, 4);
    }

    #[test]
    fn malformed_values_name_file_line_and_key() {
        let env = parse("SLOT_NUMBER=42\nKTRDR_API_PORT=80x1\n").unwrap();
        let err = env.require_number("SLOT_NUMBER", 0..=10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/x/.env.sandbox` line 1: `SLOT_NUMBER` is 42, outside 0..=10"
        );
        let err = env.require_port("KTRDR_API_PORT").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/x/.env.sandbox` line 2: `KTRDR_API_PORT` is not a number: `80x1`"
        );
        let err = env.require_port("MISSING").unwrap_err();
        assert!(err.to_string().contains("has no `MISSING`"));
    }

    #[test]
    fn a_line_without_equals_is_a_syntax_error() {
        let err = parse("A=1\nnot an assignment\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
