//! kinfra's own environment variables (`KINFRA_*` settings), read in one place with
//! range checks: a bad value is an error naming the variable, the value and what is
//! allowed, never a panic and never a silent fallback to the default. Unset (or set to
//! the empty string, the shell's way of clearing it for one command) means the default.

use std::ops::RangeInclusive;
use std::sync::OnceLock;
use std::time::Duration;

/// Seconds to wait for the registry lock before giving up.
pub const LOCK_TIMEOUT: &str = "KINFRA_LOCK_TIMEOUT";
/// Seconds a git or docker query may take.
pub const TIMEOUT_READ: &str = "KINFRA_TIMEOUT_READ";
/// Seconds a compose `up`/`down` (and other long work) may take.
pub const TIMEOUT_COMPOSE: &str = "KINFRA_TIMEOUT_COMPOSE";
/// Which Compose to use: `v1`, `v2` or `auto`.
pub const COMPOSE: &str = "KINFRA_COMPOSE";
/// A fixed "now" (ISO-8601 with offset) for tests of age-based features.
pub const TEST_NOW: &str = "KINFRA_TEST_NOW";

pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT_READ: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT_COMPOSE: Duration = Duration::from_secs(10 * 60);

/// Zero is allowed: fail at once when another command holds the lock.
const LOCK_RANGE: RangeInclusive<f64> = 0.0..=86_400.0;
/// A zero limit would kill every command at once, so there is a floor.
const TIMEOUT_RANGE: RangeInclusive<f64> = 0.1..=86_400.0;

/// A setting with a value kinfra cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("`{name}` is `{value}`, but it must be {expected}")]
    Invalid {
        name: String,
        value: String,
        expected: String,
    },
}

impl crate::error::Diagnostic for EnvError {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Usage
    }

    fn hint(&self) -> Option<String> {
        match self {
            EnvError::Invalid { name, .. } if name.starts_with("KINFRA_") => {
                Some(format!("fix `{name}` or unset it to use the default"))
            }
            EnvError::Invalid { .. } => None,
        }
    }
}

fn invalid(name: &str, value: &str, expected: String) -> EnvError {
    EnvError::Invalid {
        name: name.to_string(),
        value: shown(value),
        expected,
    }
}

/// The value as it can be shown on one line: control characters escaped, long values cut.
fn shown(value: &str) -> String {
    const MAX: usize = 60;
    let escaped: String = value.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > MAX {
        let cut: String = escaped.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        escaped
    }
}

/// Parse a number of seconds (fractions allowed) within `range`; `name` (a variable, a
/// flag such as `--timeout`, a config key) is what the error names.
pub fn parse_seconds(
    name: &str,
    text: &str,
    range: RangeInclusive<f64>,
) -> Result<Duration, EnvError> {
    let expected = || {
        format!(
            "a number of seconds from {} to {}",
            range.start(),
            range.end()
        )
    };
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| invalid(name, text, expected()))?;
    if !secs.is_finite() || !range.contains(&secs) {
        return Err(invalid(name, text, expected()));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| invalid(name, text, expected()))
}

/// The variable's value; `None` when unset or empty. Not UTF-8 is an error.
fn var(name: &str) -> Result<Option<String>, EnvError> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(v) => match v.into_string() {
            Ok(s) if s.is_empty() => Ok(None),
            Ok(s) => Ok(Some(s)),
            Err(raw) => Err(invalid(
                name,
                &raw.to_string_lossy(),
                "valid UTF-8".to_string(),
            )),
        },
    }
}

/// Seconds from an optional value, `default` when absent.
fn seconds_or(
    name: &str,
    value: Option<&str>,
    default: Duration,
    range: RangeInclusive<f64>,
) -> Result<Duration, EnvError> {
    value.map_or(Ok(default), |v| parse_seconds(name, v, range))
}

/// `KINFRA_LOCK_TIMEOUT`: how long to wait for the registry lock (default 60 s).
pub fn lock_timeout() -> Result<Duration, EnvError> {
    seconds_or(
        LOCK_TIMEOUT,
        var(LOCK_TIMEOUT)?.as_deref(),
        DEFAULT_LOCK_TIMEOUT,
        LOCK_RANGE,
    )
}

/// Which Compose implementation to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ComposeChoice {
    /// `docker compose` if it works, else `docker-compose`.
    #[default]
    Auto,
    /// `docker-compose`.
    V1,
    /// `docker compose`.
    V2,
}

/// Parse a Compose choice (`v1`, `v2`, `auto`); `name` is what the error names.
pub fn parse_compose_choice(name: &str, text: &str) -> Result<ComposeChoice, EnvError> {
    match text.trim() {
        "auto" => Ok(ComposeChoice::Auto),
        "v1" => Ok(ComposeChoice::V1),
        "v2" => Ok(ComposeChoice::V2),
        _ => Err(invalid(name, text, "one of `v1`, `v2`, `auto`".into())),
    }
}

/// `KINFRA_COMPOSE` (default `auto`).
pub fn compose_choice() -> Result<ComposeChoice, EnvError> {
    var(COMPOSE)?.map_or(Ok(ComposeChoice::Auto), |v| {
        parse_compose_choice(COMPOSE, &v)
    })
}

/// `KINFRA_TEST_NOW`, when set: the time kinfra takes as "now".
pub fn test_now() -> Result<Option<jiff::Timestamp>, EnvError> {
    var(TEST_NOW)?
        .map(|v| {
            crate::timefmt::parse_iso(&v).ok_or_else(|| {
                invalid(
                    TEST_NOW,
                    &v,
                    "an ISO-8601 time with offset, like `2026-01-20T16:29:14.123456+00:00`".into(),
                )
            })
        })
        .transpose()
}

/// How long each kind of outside command may run before it is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    read: Duration,
    compose: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            read: DEFAULT_TIMEOUT_READ,
            compose: DEFAULT_TIMEOUT_COMPOSE,
        }
    }
}

impl Timeouts {
    /// From `KINFRA_TIMEOUT_READ` and `KINFRA_TIMEOUT_COMPOSE` (seconds).
    pub fn from_env() -> Result<Timeouts, EnvError> {
        Timeouts::from_values(
            var(TIMEOUT_READ)?.as_deref(),
            var(TIMEOUT_COMPOSE)?.as_deref(),
        )
    }

    /// The same from given values (`None`: the default).
    pub fn from_values(read: Option<&str>, compose: Option<&str>) -> Result<Timeouts, EnvError> {
        Ok(Timeouts {
            read: seconds_or(TIMEOUT_READ, read, DEFAULT_TIMEOUT_READ, TIMEOUT_RANGE)?,
            compose: seconds_or(
                TIMEOUT_COMPOSE,
                compose,
                DEFAULT_TIMEOUT_COMPOSE,
                TIMEOUT_RANGE,
            )?,
        })
    }

    /// [`Timeouts::from_env`], read once per process (the environment does not change).
    pub fn current() -> Result<Timeouts, EnvError> {
        static CURRENT: OnceLock<Result<Timeouts, EnvError>> = OnceLock::new();
        CURRENT.get_or_init(Timeouts::from_env).clone()
    }

    /// Queries: `git rev-parse`, `git status`, `docker ps`, `docker inspect`, ….
    pub fn read(&self) -> Duration {
        self.read
    }

    /// `compose up` / `compose down`, image builds included.
    pub fn compose(&self) -> Duration {
        self.compose
    }

    /// git commands that copy or check out files (`clone`, `worktree add`, `stash`):
    /// they grow with the repository, so they get the long limit, not the query one.
    pub fn git(&self) -> Duration {
        self.compose
    }
}

/// Check every kinfra variable at once, so a bad value is reported at start-up rather
/// than by whichever command first needs it.
pub fn check_all() -> Result<(), EnvError> {
    lock_timeout()?;
    Timeouts::from_env()?;
    compose_choice()?;
    test_now()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_whole_and_fractional_values_in_range() {
        assert_eq!(
            parse_seconds("X", "30", LOCK_RANGE),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            parse_seconds("X", " 1.5 ", LOCK_RANGE),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(parse_seconds("X", "0", LOCK_RANGE), Ok(Duration::ZERO));
        assert_eq!(
            parse_seconds("X", "86400", LOCK_RANGE),
            Ok(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn bad_seconds_name_the_variable_the_value_and_the_range() {
        for bad in ["-1", "86400.5", "abc", "", "NaN", "inf", "1e400", "5s"] {
            let err = parse_seconds(LOCK_TIMEOUT, bad, LOCK_RANGE).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("`KINFRA_LOCK_TIMEOUT`"), "{msg}");
            assert!(msg.contains(&format!("`{bad}`")), "{msg}");
            assert!(msg.contains("from 0 to 86400"), "{msg}");
            assert_eq!(
                crate::error::Diagnostic::exit(&err),
                crate::error::Exit::Usage
            );
        }
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let err = Timeouts::from_values(Some("0"), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`KINFRA_TIMEOUT_READ` is `0`"), "{msg}");
        assert!(msg.contains("from 0.1 to 86400"), "{msg}");
    }

    #[test]
    fn timeouts_default_and_override() {
        let t = Timeouts::from_values(None, None).unwrap();
        assert_eq!(t, Timeouts::default());
        assert_eq!(t.read(), Duration::from_secs(30));
        assert_eq!(t.compose(), Duration::from_secs(600));
        let t = Timeouts::from_values(Some("2.5"), Some("1200")).unwrap();
        assert_eq!(t.read(), Duration::from_millis(2500));
        assert_eq!(t.compose(), Duration::from_secs(1200));
        assert_eq!(t.git(), t.compose());
        let err = Timeouts::from_values(None, Some("ten minutes")).unwrap_err();
        assert!(err.to_string().contains("`KINFRA_TIMEOUT_COMPOSE`"));
    }

    #[test]
    fn compose_choice_is_one_of_three() {
        assert_eq!(parse_compose_choice(COMPOSE, "v1"), Ok(ComposeChoice::V1));
        assert_eq!(parse_compose_choice(COMPOSE, "v2"), Ok(ComposeChoice::V2));
        assert_eq!(
            parse_compose_choice(COMPOSE, "auto"),
            Ok(ComposeChoice::Auto)
        );
        let err = parse_compose_choice(COMPOSE, "V3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`KINFRA_COMPOSE` is `V3`, but it must be one of `v1`, `v2`, `auto`"
        );
        assert_eq!(
            crate::error::Diagnostic::hint(&err).as_deref(),
            Some("fix `KINFRA_COMPOSE` or unset it to use the default")
        );
    }

    #[test]
    fn shown_values_stay_on_one_line_and_short() {
        assert_eq!(shown("a\nb"), "a\\nb");
        let long = "x".repeat(100);
        assert_eq!(shown(&long).chars().count(), 61);
    }

    #[test]
    fn flags_are_named_without_an_env_hint() {
        let err = parse_seconds("--timeout", "x", 0.0..=3600.0).unwrap_err();
        assert!(err.to_string().starts_with("`--timeout` is `x`"));
        assert_eq!(crate::error::Diagnostic::hint(&err), None);
    }
}
