//! Property-based fuzzing of kinfra's parsers and renderers.
//!
//! Every target gets arbitrary strings/bytes and structured, near-valid input. A plain
//! `cargo test` runs 256 cases per property (a quick smoke); `PROPTEST_CASES=100000`
//! makes it a long run, and `scripts/fuzz.sh` runs each module below for a fixed time.
//! One module per target group: `envfile`, `registry`, `config`, `git`, `docker`,
//! `probe`, `slug`, `secrets`.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Cases per property: `PROPTEST_CASES`, else 256. Failures are never persisted.
fn cfg() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- shared generators ----

/// Characters that matter to some parser here, plus any char at all.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::sample::select(vec![
            'a', 'z', 'A', 'Z', '0', '9', '_', '-', '=', ' ', '\t', '\'', '"', '\\', '$', '#',
            '/', '.', ':', ',', ';', '\r', '\n', '\0', '`', '!', '(', ')', '[', ']', '{', '}',
            '<', '>', '@', '%', '+', '~', '*', '\u{7f}', '\u{1b}', 'é', 'ß', 'İ', '€', '😀',
            '\u{a0}', '\u{2028}', '\u{feff}', '\u{fffd}',
        ]),
        1 => any::<char>(),
    ]
}

/// Any string of tricky chars (may hold newlines and NULs).
fn tricky(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Tricky chars minus `banned`.
fn tricky_without(max: usize, banned: &'static [char]) -> impl Strategy<Value = String> {
    tricky(max).prop_map(move |s| s.chars().filter(|c| !banned.contains(c)).collect())
}

/// One error message is one line.
fn one_line(msg: &str) -> Result<(), TestCaseError> {
    prop_assert!(!msg.contains('\n'), "multi-line error: {:?}", msg);
    Ok(())
}

// ---- envfile ----

mod envfile {
    use super::*;
    use kinfra::envfile::{EnvFile, render};
    use std::collections::BTreeMap;
    use std::path::Path;

    const PATH: &str = "/x/dir with space/.env.sandbox";

    fn check_err(err: &kinfra::envfile::EnvError, key: Option<&str>) -> Result<(), TestCaseError> {
        let msg = err.to_string();
        one_line(&msg)?;
        prop_assert!(msg.contains(PATH), "error does not name the file: {msg:?}");
        if let Some(key) = key {
            prop_assert!(msg.contains(key), "error does not name `{key}`: {msg:?}");
        }
        Ok(())
    }

    /// Whatever parsed: keys are sane, lookups never panic, errors name file and key.
    fn check_parsed(text: &str, lo: u32, hi: u32) -> Result<(), TestCaseError> {
        let path = Path::new(PATH);
        let env = match EnvFile::parse(path, text) {
            Ok(env) => env,
            Err(e) => return check_err(&e, None),
        };
        let lines = text.lines().count();
        for (key, var) in &env.vars {
            prop_assert!(!key.is_empty() && !key.contains(char::is_whitespace));
            prop_assert!(!key.contains('='));
            prop_assert!(var.line >= 1 && var.line <= lines);
            match env.require_port(key) {
                Ok(p) => {
                    prop_assert!(p >= 1);
                    prop_assert_eq!(var.value.parse::<u32>().ok(), Some(u32::from(p)));
                }
                Err(e) => check_err(&e, Some(key))?,
            }
            match env.require_number(key, lo..=hi) {
                Ok(n) => {
                    prop_assert!((lo..=hi).contains(&n));
                    prop_assert_eq!(var.value.parse::<u32>().ok(), Some(n));
                }
                Err(e) => check_err(&e, Some(key))?,
            }
        }
        let missing = "NO_SUCH_KEY_IN_ANY_FILE";
        if !env.vars.contains_key(missing) {
            check_err(&env.require_port(missing).unwrap_err(), Some(missing))?;
            check_err(&env.require(missing).unwrap_err(), Some(missing))?;
        }
        Ok(())
    }

    fn ws() -> impl Strategy<Value = String> {
        "[ \t]{0,2}"
    }

    fn key_ish() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Z_][A-Z0-9_]{0,10}",
            1 => "[A-Za-z0-9_ .=#-]{0,6}",
            1 => tricky_without(6, &['\n']),
        ]
    }

    fn value_ish() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => "[0-9]{1,6}",
            1 => "[+-]?[0-9]{1,12}",
            3 => tricky_without(16, &['\n']),
        ]
    }

    /// One line of a near-valid env file.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => (any::<bool>(), ws(), key_ish(), ws(), ws(), value_ish(), 0..6u8, ws()).prop_map(
                |(export, a, key, b, c, value, quote, d)| {
                    let value = match quote {
                        0 | 1 => value,
                        2 => format!("'{value}'"),
                        3 => format!("\"{value}\""),
                        4 => format!("'{value}\""),
                        _ => format!("'{}'", value.replace('\'', r"'\''")),
                    };
                    let export = if export { "export " } else { "" };
                    format!("{a}{export}{key}{b}={c}{value}{d}")
                }
            ),
            1 => (ws(), tricky_without(20, &['\n'])).prop_map(|(a, t)| format!("{a}#{t}")),
            1 => ws(),
            1 => tricky_without(20, &['\n']),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(line(), 0..12),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(lines, crlf, trailing)| {
                let sep = if crlf { "\r\n" } else { "\n" };
                let mut text = lines.join(sep);
                if trailing {
                    text.push_str(sep);
                }
                text
            })
    }

    fn valid_key() -> impl Strategy<Value = String> {
        "[A-Z_][A-Z0-9_]{0,15}"
    }

    /// Values as they may really be set: no newline, no NUL, anything else goes.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => tricky_without(24, &['\n', '\0']),
            1 => any::<String>().prop_map(|s| s.replace(['\n', '\0'], "")),
            1 => prop::sample::select(vec![
                "", "'", "''", "\"", "\"\"", "'\\''", "\\", " ", " a ", "$HOME", "${X}", "`id`",
                "#", "a#b", "=", "==", "export X=1", "'a'", "\"a\"", "'a\"", "\u{a0}", "\r",
            ])
            .prop_map(str::to_string),
            1 => any::<u32>().prop_map(|n| n.to_string()),
        ]
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), lo in any::<u32>(), hi in any::<u32>()) {
            check_parsed(&text, lo, hi)?;
        }

        #[test]
        fn near_valid_text_never_panics(text in text(), lo in 0..70_000u32, hi in 0..70_000u32) {
            check_parsed(&text, lo, hi)?;
        }

        #[test]
        fn render_parse_round_trips(vars in prop::collection::btree_map(valid_key(), value(), 0..10)) {
            let text = render(&vars);
            let env = EnvFile::parse(Path::new(PATH), &text)
                .map_err(|e| TestCaseError::fail(format!("{e}\n--- rendered:\n{text}")))?;
            prop_assert_eq!(&env.to_map(), &vars, "rendered:\n{}", text);
            for (i, key) in vars.keys().enumerate() {
                prop_assert_eq!(env.vars[key].line, i + 1);
            }
        }

        #[test]
        fn rendered_numbers_are_read_back(
            vars in prop::collection::btree_map(valid_key(), any::<u32>(), 1..6),
            lo in any::<u32>(),
            hi in any::<u32>(),
        ) {
            let text = render(&vars.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<BTreeMap<_, _>>());
            let env = EnvFile::parse(Path::new(PATH), &text).unwrap();
            for (key, n) in &vars {
                match env.require_number(key, lo..=hi) {
                    Ok(got) => prop_assert_eq!(got, *n),
                    Err(e) => {
                        prop_assert!(!(lo..=hi).contains(n), "{e}");
                        check_err(&e, Some(key))?;
                    }
                }
                match env.require_port(key) {
                    Ok(p) => prop_assert_eq!(u32::from(p), *n),
                    Err(e) => {
                        prop_assert!(!(1..=65_535).contains(n), "{e}");
                        check_err(&e, Some(key))?;
                    }
                }
            }
        }
    }
}

// ---- registry ----

mod registry {
    use super::*;
    use kinfra::registry::{Entry, Registry};
    use serde_json::{Map, Value};
    use std::path::Path;

    const PATH: &str = "/s/state dir/instances.json";

    fn json_str() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => tricky(12),
            1 => any::<String>(),
            1 => "[a-z0-9-]{1,10}",
        ]
    }

    fn json_leaf() -> BoxedStrategy<Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| if f.is_finite() { f } else { 0.5 })
                .prop_map(Value::from),
            json_str().prop_map(Value::from),
        ]
        .boxed()
    }

    pub(crate) fn json_value() -> BoxedStrategy<Value> {
        json_leaf()
            .prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((json_str(), inner), 0..4)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
            .boxed()
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            json_str(),
            any::<u32>(),
            json_str(),
            json_str(),
            any::<bool>(),
            prop::option::of(json_str()),
        )
            .prop_map(
                |(instance_id, slot, path, created_at, is_worktree, parent_repo)| Entry {
                    instance_id,
                    slot,
                    path,
                    created_at,
                    is_worktree,
                    parent_repo,
                },
            )
    }

    fn registry() -> impl Strategy<Value = Registry> {
        (
            prop::option::of(entry()),
            prop::collection::vec(entry(), 0..6),
            prop::collection::vec((json_str(), json_value()), 0..3),
        )
            .prop_map(|(local_prod, entries, extra)| {
                let mut reg = Registry {
                    local_prod,
                    ..Registry::default()
                };
                for e in entries {
                    reg.insert_sandbox(e);
                }
                for (k, v) in extra {
                    if !["version", "local_prod", "instances"].contains(&k.as_str()) {
                        reg.extra.insert(k, v);
                    }
                }
                reg
            })
    }

    /// A field value: usually the right type, sometimes missing or of another type.
    fn field(good: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            8 => good.prop_map(Some),
            1 => Just(None),
            1 => json_leaf().prop_map(Some),
        ]
        .boxed()
    }

    fn entry_ish() -> impl Strategy<Value = Value> {
        (
            field(json_str().prop_map(Value::from).boxed()),
            field(
                prop_oneof![0..20u32, any::<u32>()]
                    .prop_map(Value::from)
                    .boxed(),
            ),
            field(json_str().prop_map(Value::from).boxed()),
            field(json_str().prop_map(Value::from).boxed()),
            field(any::<bool>().prop_map(Value::from).boxed()),
            field(
                prop::option::of(json_str())
                    .prop_map(|o| o.map_or(Value::Null, Value::from))
                    .boxed(),
            ),
            prop::option::weighted(0.1, (json_str(), json_leaf())),
        )
            .prop_map(|(a, b, c, d, e, f, extra)| {
                let mut m = Map::new();
                let names = [
                    "instance_id",
                    "slot",
                    "path",
                    "created_at",
                    "is_worktree",
                    "parent_repo",
                ];
                for (name, v) in names.into_iter().zip([a, b, c, d, e, f]) {
                    if let Some(v) = v {
                        m.insert(name.into(), v);
                    }
                }
                if let Some((k, v)) = extra {
                    m.insert(k, v);
                }
                Value::Object(m)
            })
    }

    /// A registry file that is mostly right: fields missing, of the wrong type, keys not
    /// matching ids, sometimes truncated or with a byte changed.
    fn file_ish() -> impl Strategy<Value = Vec<u8>> {
        let version = prop_oneof![
            4 => Just(Some(Value::from(1))),
            1 => Just(None),
            1 => json_leaf().prop_map(Some),
        ];
        let local_prod = prop_oneof![
            2 => Just(Some(Value::Null)),
            1 => Just(None),
            2 => entry_ish().prop_map(Some),
            1 => json_leaf().prop_map(Some),
        ];
        let instances = prop_oneof![
            6 => prop::collection::vec((any::<bool>(), json_str(), entry_ish()), 0..5).prop_map(
                |items| {
                    let map: Map<String, Value> = items
                        .into_iter()
                        .map(|(use_id, key, entry)| {
                            let id = entry.get("instance_id").and_then(Value::as_str);
                            match id {
                                Some(id) if use_id => (id.to_string(), entry),
                                _ => (key, entry),
                            }
                        })
                        .collect();
                    Some(Value::Object(map))
                }
            ),
            1 => Just(None),
            1 => json_value().prop_map(Some),
        ];
        (
            version,
            local_prod,
            instances,
            prop::collection::vec((json_str(), json_value()), 0..2),
            0..8u8,
            any::<prop::sample::Index>(),
            any::<u8>(),
        )
            .prop_map(
                |(version, local_prod, instances, extra, mutate, at, byte)| {
                    let mut top = Map::new();
                    for (k, v) in [
                        ("version", version),
                        ("local_prod", local_prod),
                        ("instances", instances),
                    ] {
                        if let Some(v) = v {
                            top.insert(k.into(), v);
                        }
                    }
                    for (k, v) in extra {
                        top.insert(k, v);
                    }
                    let mut bytes = if mutate % 2 == 0 {
                        serde_json::to_vec_pretty(&Value::Object(top)).unwrap()
                    } else {
                        serde_json::to_vec(&Value::Object(top)).unwrap()
                    };
                    if !bytes.is_empty() {
                        let i = at.index(bytes.len());
                        match mutate {
                            6 => bytes.truncate(i),
                            7 => bytes[i] = byte,
                            _ => {}
                        }
                    }
                    bytes
                },
            )
    }

    fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
        let path = Path::new(PATH);
        match Registry::parse(path, bytes) {
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(PATH), "error does not name the file: {msg:?}");
            }
            Ok(reg) => {
                let json = reg.to_json();
                prop_assert!(json.is_ascii());
                let back = Registry::parse(path, json.as_bytes())
                    .map_err(|e| TestCaseError::fail(format!("re-parse failed: {e}")))?;
                prop_assert_eq!(&back, &reg, "input: {:?}", String::from_utf8_lossy(bytes));
                prop_assert_eq!(
                    back.to_json(),
                    json,
                    "input: {:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            check(&bytes)?;
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            check(text.as_bytes())?;
        }

        #[test]
        fn near_valid_files_never_panic(bytes in file_ish()) {
            check(&bytes)?;
        }

        #[test]
        fn to_json_parse_round_trips(reg in registry()) {
            let json = reg.to_json();
            prop_assert!(json.is_ascii(), "non-ASCII output: {}", json);
            let back = Registry::parse(Path::new(PATH), json.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{e}\n--- json:\n{json}")))?;
            prop_assert_eq!(&back, &reg, "json:\n{}", json);
            prop_assert_eq!(back.to_json(), json);
        }
    }
}

// ---- config ----

mod config {
    use super::*;
    use kinfra::config::Config;
    use std::path::Path;

    const PATH: &str = "/r/my repo/kinfra.toml";

    #[derive(Clone, Copy, Debug)]
    enum K {
        Str,
        Int,
        Strs,
        Ints,
        CopyFiles,
        Subdirs,
        Fields,
    }

    const PROJECT: &[(&str, K)] = &[
        ("name", K::Str),
        ("sandbox_prefix", K::Str),
        ("repo_check", K::Str),
    ];
    const STATE: &[(&str, K)] = &[("dir", K::Str), ("registry", K::Str)];
    const INSTANCE: &[(&str, K)] = &[
        ("env_file", K::Str),
        ("compose_files", K::Strs),
        ("copy_files", K::CopyFiles),
    ];
    const SLOTS: &[(&str, K)] = &[("count", K::Int)];
    const LOCAL_PROD: &[(&str, K)] = &[("dir", K::Str), ("id", K::Str), ("profile", K::Str)];
    const SHARED: &[(&str, K)] = &[
        ("dir", K::Str),
        ("env_key", K::Str),
        ("subdirs", K::Subdirs),
    ];
    const GATE: &[(&str, K)] = &[("timeout", K::Int)];
    const SECRETS: &[(&str, K)] = &[("timeout", K::Int)];
    const PORT: &[(&str, K)] = &[
        ("label", K::Str),
        ("url", K::Str),
        ("local_prod", K::Int),
        ("local_prod_count", K::Int),
        ("sandbox", K::Int),
        ("stride", K::Int),
        ("count", K::Int),
    ];
    const CHECK: &[(&str, K)] = &[
        ("name", K::Str),
        ("kind", K::Str),
        ("port", K::Str),
        ("path", K::Str),
        ("expect_status", K::Ints),
        ("min_count", K::Int),
        ("count_field", K::Str),
        ("after", K::Strs),
        ("service", K::Str),
    ];
    const ITEM: &[(&str, K)] = &[("item", K::Str), ("vault", K::Str), ("fields", K::Fields)];

    const WORDS: &[&str] = &[
        "",
        "x",
        "ktrdr",
        "ktrdr-prod",
        "Bad Name",
        "KTRDR_DB_PORT",
        "KTRDR_API_PORT",
        "A",
        "Backend",
        "Database",
        "tcp",
        "http",
        "udp",
        "/",
        "/api",
        "api",
        "~",
        "~/x",
        ".env.sandbox",
        "a/b",
        "workers",
    ];

    fn toml_str() -> BoxedStrategy<String> {
        prop_oneof![
            3 => prop::sample::select(WORDS).prop_map(str::to_string),
            2 => tricky(10),
        ]
        .boxed()
    }

    fn toml_int() -> BoxedStrategy<i64> {
        prop_oneof![
            4 => 0..120i64,
            2 => 1..70_000i64,
            1 => prop::sample::select(vec![
                -1,
                0,
                99,
                100,
                65_535,
                65_536,
                i64::from(u32::MAX),
                i64::from(u32::MAX) + 1,
                i64::MAX,
                i64::MIN,
            ]),
            1 => any::<i64>(),
        ]
        .boxed()
    }

    fn any_value() -> BoxedStrategy<toml::Value> {
        let leaf = prop_oneof![
            toml_str().prop_map(toml::Value::String),
            toml_int().prop_map(toml::Value::Integer),
            any::<bool>().prop_map(toml::Value::Boolean),
            (-1e6..1e6f64).prop_map(toml::Value::Float),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
                prop::collection::vec((toml_str(), inner), 0..3)
                    .prop_map(|kv| toml::Value::Table(kv.into_iter().collect())),
            ]
        })
        .boxed()
    }

    fn table_of(pairs: &[(&str, &str)]) -> toml::Value {
        toml::Value::Table(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string())))
                .collect(),
        )
    }

    fn typed(kind: K) -> BoxedStrategy<toml::Value> {
        let strs = || prop::collection::vec(toml_str(), 0..3);
        let good: BoxedStrategy<toml::Value> = match kind {
            K::Str => toml_str().prop_map(toml::Value::String).boxed(),
            K::Int => toml_int().prop_map(toml::Value::Integer).boxed(),
            K::Strs => strs()
                .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::String).collect()))
                .boxed(),
            K::Ints => prop::collection::vec(toml_int(), 0..3)
                .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::Integer).collect()))
                .boxed(),
            K::CopyFiles => prop::collection::vec((toml_str(), toml_str()), 0..3)
                .prop_map(|v| {
                    toml::Value::Array(
                        v.iter()
                            .map(|(a, b)| table_of(&[("from", a), ("to", b)]))
                            .collect(),
                    )
                })
                .boxed(),
            K::Subdirs => prop::collection::vec((toml_str(), toml_str()), 0..3)
                .prop_map(|v| {
                    toml::Value::Array(
                        v.iter()
                            .map(|(a, b)| table_of(&[("name", a), ("env_key", b)]))
                            .collect(),
                    )
                })
                .boxed(),
            K::Fields => prop::collection::vec((toml_str(), toml_str()), 0..3)
                .prop_map(|v| {
                    toml::Value::Table(
                        v.into_iter()
                            .map(|(a, b)| (a, toml::Value::String(b)))
                            .collect(),
                    )
                })
                .boxed(),
        };
        prop_oneof![6 => good, 1 => any_value()].boxed()
    }

    /// TOML basic string (also usable as a quoted key).
    fn quote(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn key(k: &str) -> String {
        if !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            k.to_string()
        } else {
            quote(k)
        }
    }

    fn value_text(v: &toml::Value) -> String {
        match v {
            toml::Value::String(s) => quote(s),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => format!("{f:?}"),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Array(a) => {
                let items: Vec<String> = a.iter().map(value_text).collect();
                format!("[{}]", items.join(", "))
            }
            toml::Value::Table(t) => {
                let items: Vec<String> = t
                    .iter()
                    .map(|(k, v)| format!("{} = {}", key(k), value_text(v)))
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
        }
    }

    type Body = Vec<(String, toml::Value)>;

    /// Some keys of `keys` with typed (or, sometimes, wrong) values, and rarely an
    /// unknown key.
    fn body(keys: &'static [(&'static str, K)]) -> BoxedStrategy<Body> {
        let known = prop::sample::select(keys)
            .prop_flat_map(|(k, kind)| (Just(k.to_string()), typed(kind)));
        (
            prop::collection::vec(known, 0..keys.len() + 2),
            prop::option::weighted(0.05, (tricky(6), any_value())),
        )
            .prop_map(|(mut kv, unknown)| {
                kv.extend(unknown);
                let mut seen = std::collections::HashSet::new();
                kv.retain(|(k, _)| seen.insert(k.clone()));
                kv
            })
            .boxed()
    }

    fn render_body(out: &mut String, body: &Body) {
        for (k, v) in body {
            out.push_str(&format!("{} = {}\n", key(k), value_text(v)));
        }
    }

    fn port_key() -> BoxedStrategy<String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "KTRDR_API_PORT", "KTRDR_DB_PORT", "A", "B", "X_1", "_", "9BAD", "bad key", "a-b",
            ])
            .prop_map(str::to_string),
            1 => tricky(6),
        ]
        .boxed()
    }

    /// A kinfra.toml built from the known sections and keys, with random values.
    fn text() -> impl Strategy<Value = String> {
        let sections: Vec<(&'static str, &'static [(&'static str, K)])> = vec![
            ("project", PROJECT),
            ("state", STATE),
            ("instance", INSTANCE),
            ("slots", SLOTS),
            ("local_prod", LOCAL_PROD),
            ("shared", SHARED),
            ("gate", GATE),
            ("secrets", SECRETS),
        ];
        let plain: Vec<BoxedStrategy<Option<(String, Body)>>> = sections
            .into_iter()
            .map(|(name, keys)| {
                prop::option::weighted(0.4, body(keys).prop_map(move |b| (name.to_string(), b)))
                    .boxed()
            })
            .collect();
        (
            plain,
            prop::option::weighted(0.5, prop::collection::vec((port_key(), body(PORT)), 0..4)),
            prop::collection::vec(body(CHECK), 0..4),
            prop::collection::vec(body(ITEM), 0..2),
            prop::option::weighted(0.05, tricky(8)),
            0..8u8,
            any::<prop::sample::Index>(),
        )
            .prop_map(|(plain, ports, checks, items, bogus, mutate, at)| {
                let mut out = String::new();
                for (name, b) in plain.into_iter().flatten() {
                    out.push_str(&format!("[{name}]\n"));
                    render_body(&mut out, &b);
                }
                for (k, b) in ports.into_iter().flatten() {
                    out.push_str(&format!("[ports.{}]\n", key(&k)));
                    render_body(&mut out, &b);
                }
                for b in checks {
                    out.push_str("[[gate.checks]]\n");
                    render_body(&mut out, &b);
                }
                for b in items {
                    out.push_str("[[secrets.items]]\n");
                    render_body(&mut out, &b);
                }
                if let Some(b) = bogus {
                    out.push_str(&format!("[{}]\n", key(&b)));
                }
                // Sometimes cut the text short (on a char boundary).
                if mutate == 7 && !out.is_empty() {
                    let mut i = at.index(out.len());
                    while !out.is_char_boundary(i) {
                        i -= 1;
                    }
                    out.truncate(i);
                }
                out
            })
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        if let Err(e) = Config::from_layers(Some(Path::new(PATH)), Some(text)) {
            let msg = e.to_string();
            one_line(&msg)?;
            prop_assert!(msg.contains(PATH), "error does not name the file: {msg:?}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            check(&text)?;
        }

        #[test]
        fn near_valid_toml_never_panics_and_errors_are_one_line(text in text()) {
            check(&text)?;
        }
    }
}

// ---- git ----

mod git {
    use super::*;
    use kinfra::git::{Worktree, parse_repo_info, parse_status_paths, parse_worktree_list};
    use std::path::{Path, PathBuf};

    fn line_path() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => "(/[a-z .-]{1,8}){1,4}(/\\.git(/worktrees/[a-z]{1,5})?)?",
            // git never prints an empty path.
            1 => tricky_without(16, &['\n', '\r']).prop_filter("non-empty", |s| !s.is_empty()),
        ]
    }

    /// A path as `-z` output carries it: anything but NUL.
    fn z_path() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => "(/[a-z é😀-]{1,8}){1,4}",
            1 => tricky_without(16, &['\0']),
        ]
    }

    fn no_nul(max: usize) -> impl Strategy<Value = String> {
        tricky_without(max, &['\0'])
    }

    fn worktree() -> impl Strategy<Value = Worktree> {
        (
            z_path(),
            prop::option::of("[0-9a-f]{40}"),
            prop::option::of(prop_oneof![
                3 => "[a-z][a-z0-9/_.-]{0,12}",
                1 => no_nul(10),
            ]),
            (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(|(path, head, branch, (bare, detached, locked, prunable))| {
                Worktree {
                    path: PathBuf::from(path),
                    head,
                    branch,
                    bare,
                    detached,
                    locked,
                    prunable,
                }
            })
    }

    fn render_worktrees(list: &[(Worktree, Option<String>, Option<String>)]) -> String {
        let mut out = String::new();
        for (w, lock_reason, prune_reason) in list {
            out.push_str(&format!("worktree {}\0", w.path.to_str().unwrap()));
            if let Some(h) = &w.head {
                out.push_str(&format!("HEAD {h}\0"));
            }
            if let Some(b) = &w.branch {
                out.push_str(&format!("branch refs/heads/{b}\0"));
            }
            if w.bare {
                out.push_str("bare\0");
            }
            if w.detached {
                out.push_str("detached\0");
            }
            let flag = |out: &mut String, name: &str, on: bool, reason: &Option<String>| {
                if on {
                    match reason {
                        Some(r) => out.push_str(&format!("{name} {r}\0")),
                        None => out.push_str(&format!("{name}\0")),
                    }
                }
            };
            flag(&mut out, "locked", w.locked, lock_reason);
            flag(&mut out, "prunable", w.prunable, prune_reason);
            out.push('\0');
        }
        out
    }

    /// One `git status --porcelain=v1 -z` record: (XY, path, original path if renamed).
    fn status_record() -> impl Strategy<Value = (String, String, Option<String>)> {
        let path = prop_oneof![
            3 => "[a-zA-Z0-9 ._/é😀-]{1,16}",
            1 => tricky_without(16, &['\0', '\n']).prop_filter("non-empty", |s| !s.is_empty()),
        ];
        let plain = prop::sample::select(vec![
            " M", "M ", "MM", "A ", "AM", " D", "D ", " T", "T ", "UU", "AA", "DD", "??", "!!",
        ]);
        let renamed = prop::sample::select(vec!["R ", "RM", "C ", "CM", "RD", " R", " C"]);
        prop_oneof![
            4 => (plain, path.clone()).prop_map(|(xy, p)| (xy.to_string(), p, None)),
            1 => (renamed, path.clone(), path).prop_map(|(xy, p, o)| (xy.to_string(), p, Some(o))),
        ]
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn repo_info_arbitrary_never_panics(text in any::<String>(), t in tricky(40)) {
            let _ = parse_repo_info(&text);
            let _ = parse_repo_info(&t);
        }

        #[test]
        fn repo_info_of_three_paths(
            top in line_path(),
            git_dir in line_path(),
            common in line_path(),
            trailing in any::<bool>(),
        ) {
            let text = format!("{top}\n{git_dir}\n{common}{}", if trailing { "\n" } else { "" });
            let info = parse_repo_info(&text);
            if top.is_empty() {
                prop_assert!(info.is_none());
            } else {
                let info = info.expect("three non-empty lines parse");
                prop_assert_eq!(&info.toplevel, &PathBuf::from(&top));
                prop_assert_eq!(info.is_linked_worktree, Path::new(&git_dir) != Path::new(&common));
                let common = Path::new(&common);
                if common.file_name().is_some_and(|n| n == ".git") {
                    prop_assert_eq!(Some(info.main_root.as_path()), common.parent());
                } else {
                    prop_assert_eq!(&info.main_root, &info.toplevel);
                }
            }
        }

        #[test]
        fn worktree_list_arbitrary_never_panics(text in any::<String>(), t in tricky(60)) {
            let _ = parse_worktree_list(&text);
            let _ = parse_worktree_list(&t);
        }

        #[test]
        fn worktree_list_round_trips(
            list in prop::collection::vec(
                (worktree(), prop::option::of(no_nul(8)), prop::option::of(no_nul(8))),
                0..5,
            ),
        ) {
            let text = render_worktrees(&list);
            let parsed = parse_worktree_list(&text);
            let want: Vec<Worktree> = list.into_iter().map(|(w, _, _)| w).collect();
            prop_assert_eq!(parsed, want, "input: {:?}", text);
        }

        #[test]
        fn status_paths_arbitrary_never_panics(text in any::<String>(), t in tricky(40)) {
            for p in parse_status_paths(&text).into_iter().chain(parse_status_paths(&t)) {
                prop_assert!(!p.contains('\0'));
            }
        }

        #[test]
        fn status_paths_of_records(records in prop::collection::vec(status_record(), 0..8)) {
            let mut text = String::new();
            for (xy, path, orig) in &records {
                text.push_str(&format!("{xy} {path}\0"));
                if let Some(o) = orig {
                    text.push_str(&format!("{o}\0"));
                }
            }
            let want: Vec<String> = records.into_iter().map(|(_, p, _)| p).collect();
            prop_assert_eq!(parse_status_paths(&text), want, "input: {:?}", text);
        }
    }
}

// ---- docker / status ----

mod docker {
    use super::*;
    use kinfra::docker::parse_lines;
    use kinfra::status::{parse_exit_code, parse_health, parse_host_ports, parse_ps};

    fn no_dups(ports: &[u16]) -> Result<(), TestCaseError> {
        let mut sorted = ports.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), ports.len(), "duplicates in {:?}", ports);
        Ok(())
    }

    /// One published-port entry, and the host ports it stands for.
    fn port_part() -> impl Strategy<Value = (String, Vec<u16>)> {
        let host = prop::sample::select(vec!["0.0.0.0:", "127.0.0.1:", ":::", "[::]:", "[::1]:"]);
        let proto = prop::sample::select(vec!["/tcp", "/udp", "/sctp", ""]);
        prop_oneof![
            // host:port->port/proto
            4 => (host.clone(), any::<u16>(), any::<u16>(), proto.clone()).prop_map(
                |(h, p, c, pr)| (format!("{h}{p}->{c}{pr}"), vec![p])
            ),
            // host:lo-hi->lo-hi/proto (hi may be below lo: nothing)
            2 => (host, any::<u16>(), -4..48i32, proto.clone()).prop_map(|(h, lo, w, pr)| {
                let hi = (i32::from(lo) + w).clamp(0, 65_535) as u16;
                let ports: Vec<u16> = (lo..=hi).collect();
                (format!("{h}{lo}-{hi}->{lo}-{hi}{pr}"), ports)
            }),
            // exposed only
            1 => (any::<u16>(), proto).prop_map(|(c, pr)| (format!("{c}{pr}"), vec![])),
            // junk
            1 => tricky_without(10, &[',', '>', '\t', '\n', '\r']).prop_map(|s| (s, vec![])),
        ]
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => "[a-z0-9_-]{1,10}",
            1 => tricky_without(10, &['\t', '\n', '\r'])
                .prop_map(|s| s.trim().to_string()),
        ]
    }

    fn status_text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "Up 3 seconds",
                "Up 2 minutes (healthy)",
                "Up 1 second (unhealthy)",
                "Up 1 second (health: starting)",
                "Exited (0) 5 seconds ago",
                "Exited (137) 1 hour ago",
                "Exited (-1) now",
                "Created",
            ])
            .prop_map(str::to_string),
            any::<i32>().prop_map(|n| format!("Exited ({n}) 2 seconds ago")),
            field(),
        ]
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn ps_arbitrary_never_panics(text in any::<String>(), t in tricky(80)) {
            for c in parse_ps(&text).into_iter().chain(parse_ps(&t)) {
                prop_assert!(!c.project.is_empty());
                no_dups(&c.host_ports)?;
            }
        }

        #[test]
        fn ps_lines_parse_field_by_field(
            rows in prop::collection::vec(
                (field(), field(), field(), field(), status_text(),
                 prop::collection::vec(port_part(), 0..4), 0..5u8),
                0..6,
            ),
        ) {
            let mut text = String::new();
            let mut want = Vec::new();
            for (project, service, name, state, status, ports, shape) in &rows {
                let ports_text: Vec<&str> = ports.iter().map(|(s, _)| s.as_str()).collect();
                let ports_text = ports_text.join(", ");
                match shape {
                    // Too few fields: skipped.
                    0 => text.push_str(&format!("{project}\t{service}\t{name}\t{state}\n")),
                    // No project: skipped.
                    1 => text.push_str(&format!("\t{service}\t{name}\t{state}\t{status}\t{ports_text}\n")),
                    _ => {
                        text.push_str(&format!("{project}\t{service}\t{name}\t{state}\t{status}\t{ports_text}\n"));
                        if !project.is_empty() {
                            want.push((project, service, name, state.to_lowercase(), status, ports_text));
                        }
                    }
                }
            }
            let got = parse_ps(&text);
            prop_assert_eq!(got.len(), want.len(), "input: {:?}", text);
            for (c, (project, service, name, state, status, ports)) in got.iter().zip(want) {
                prop_assert_eq!(&c.project, project);
                prop_assert_eq!(&c.service, service);
                prop_assert_eq!(&c.name, name);
                prop_assert_eq!(c.state, kinfra::status::ContainerState::parse(&state));
                prop_assert_eq!(&c.status, status);
                prop_assert_eq!(&c.health, &parse_health(status));
                prop_assert_eq!(c.exit_code, parse_exit_code(status));
                prop_assert_eq!(&c.host_ports, &parse_host_ports(&ports));
            }
        }

        #[test]
        fn health_and_exit_code_never_panic(text in any::<String>(), t in tricky(30)) {
            for s in [&text, &t] {
                if let Some(h) = parse_health(s) {
                    prop_assert!(["healthy", "unhealthy", "starting"].contains(&h.label()));
                    prop_assert!(s.contains(h.label()));
                }
                if parse_exit_code(s).is_some() {
                    prop_assert!(s.starts_with("Exited ("));
                }
            }
        }

        #[test]
        fn exit_code_is_read_back(n in any::<i32>(), rest in tricky(20)) {
            prop_assert_eq!(parse_exit_code(&format!("Exited ({n}){rest}")), Some(n));
        }

        #[test]
        fn host_ports_arbitrary_have_no_duplicates(text in any::<String>(), t in tricky(60)) {
            // Arbitrary text rarely spells a wide range; these stay fast.
            no_dups(&parse_host_ports(&text))?;
            no_dups(&parse_host_ports(&t))?;
        }

        #[test]
        fn host_ports_of_entries(
            parts in prop::collection::vec(port_part(), 0..8),
            sep in prop::sample::select(vec![", ", ",", " , "]),
        ) {
            let text: Vec<&str> = parts.iter().map(|(s, _)| s.as_str()).collect();
            let text = text.join(sep);
            let mut want: Vec<u16> = Vec::new();
            for p in parts.iter().flat_map(|(_, ports)| ports) {
                if !want.contains(p) {
                    want.push(*p);
                }
            }
            let got = parse_host_ports(&text);
            no_dups(&got)?;
            prop_assert_eq!(got, want, "input: {:?}", text);
        }

        #[test]
        fn lines_arbitrary_are_trimmed_and_non_empty(text in any::<String>(), t in tricky(60)) {
            for l in parse_lines(&text).into_iter().chain(parse_lines(&t)) {
                prop_assert!(!l.is_empty());
                prop_assert_eq!(l.trim(), l.as_str());
                prop_assert!(!l.contains('\n'));
            }
        }

        #[test]
        fn lines_round_trip(
            names in prop::collection::vec(tricky_without(12, &['\n']), 0..8),
            crlf in any::<bool>(),
        ) {
            let sep = if crlf { "\r\n" } else { "\n" };
            let text = names.join(sep);
            let want: Vec<String> = names
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            prop_assert_eq!(parse_lines(&text), want);
        }
    }
}

// ---- probe ----

mod probe {
    use super::*;
    use kinfra::probe::{json_count, parse_response};
    use serde_json::Value;

    fn header_line() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![
                "Content-Type",
                "Server",
                "Connection",
                "X-Thing",
                "Date",
                "Content-Lengthy",
                "Transfer-Encodings",
            ]),
            tricky_without(16, &['\r', '\n']),
        )
            .prop_map(|(k, v)| format!("{k}: {v}"))
    }

    /// How the body is framed.
    #[derive(Debug, Clone)]
    enum Framing {
        Close,
        Length(usize),
        Chunked(Vec<usize>, bool),
    }

    fn framing() -> impl Strategy<Value = Framing> {
        prop_oneof![
            Just(Framing::Close),
            (0..80usize).prop_map(Framing::Length),
            (prop::collection::vec(1..20usize, 0..6), any::<bool>())
                .prop_map(|(sizes, upper)| Framing::Chunked(sizes, upper)),
        ]
    }

    fn response() -> impl Strategy<Value = (Vec<u8>, u16, Vec<u8>)> {
        (
            prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2"]),
            any::<u16>(),
            tricky_without(12, &['\r', '\n']),
            prop::collection::vec(header_line(), 0..4),
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                ("Content-Length", "Transfer-Encoding", "chunked"),
                ("content-length", "transfer-encoding", "Chunked"),
                ("CONTENT-LENGTH", "TRANSFER-ENCODING", "CHUNKED"),
            ]),
            prop::collection::vec(any::<u8>(), 0..64),
            framing(),
        )
            .prop_map(
                |(version, status, reason, mut headers, at, names, body, framing)| {
                    let (cl, te, chunked) = names;
                    let (wire, want): (Vec<u8>, Vec<u8>) = match &framing {
                        Framing::Close => (body.clone(), body.clone()),
                        Framing::Length(n) => {
                            headers.insert(at.index(headers.len() + 1), format!("{cl}: {n}"));
                            (body.clone(), body[..(*n).min(body.len())].to_vec())
                        }
                        Framing::Chunked(sizes, upper) => {
                            headers.insert(at.index(headers.len() + 1), format!("{te}: {chunked}"));
                            let mut wire = Vec::new();
                            let mut rest = body.as_slice();
                            for &size in sizes {
                                if rest.is_empty() {
                                    break;
                                }
                                let (chunk, tail) = rest.split_at(size.min(rest.len()));
                                let size = if *upper {
                                    format!("{:X}", chunk.len())
                                } else {
                                    format!("{:x};ext=1", chunk.len())
                                };
                                wire.extend_from_slice(size.as_bytes());
                                wire.extend_from_slice(b"\r\n");
                                wire.extend_from_slice(chunk);
                                wire.extend_from_slice(b"\r\n");
                                rest = tail;
                            }
                            let sent = body.len() - rest.len();
                            wire.extend_from_slice(b"0\r\n\r\n");
                            (wire, body[..sent].to_vec())
                        }
                    };
                    let mut raw = format!("{version} {status} {reason}\r\n").into_bytes();
                    for h in &headers {
                        raw.extend_from_slice(h.as_bytes());
                        raw.extend_from_slice(b"\r\n");
                    }
                    raw.extend_from_slice(b"\r\n");
                    raw.extend_from_slice(&wire);
                    (raw, status, want)
                },
            )
    }

    fn counted_json() -> impl Strategy<Value = (Value, Option<String>)> {
        let field = prop::option::of(prop_oneof![
            3 => Just("workers".to_string()),
            1 => tricky(6),
        ]);
        (
            super::registry::json_value(),
            field,
            prop::collection::vec(super::registry::json_value(), 0..5),
            0..4u8,
        )
            .prop_map(|(v, field, items, shape)| {
                let v = match (shape, &field) {
                    // A list at the top.
                    (0, _) => Value::Array(items),
                    // An object holding the field as a list.
                    (1, Some(f)) => {
                        let mut m = serde_json::Map::new();
                        m.insert("other".into(), v);
                        m.insert(f.clone(), Value::Array(items));
                        Value::Object(m)
                    }
                    // An object holding the field as something else, or anything.
                    (2, Some(f)) => {
                        let mut m = serde_json::Map::new();
                        m.insert(f.clone(), v);
                        Value::Object(m)
                    }
                    _ => v,
                };
                (v, field)
            })
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn response_arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_response(&raw);
        }

        #[test]
        fn response_mutated_never_panics(
            (raw, _, _) in response(),
            at in any::<prop::sample::Index>(),
            cut in any::<bool>(),
            byte in any::<u8>(),
        ) {
            let mut raw = raw;
            let i = at.index(raw.len());
            if cut {
                raw.truncate(i);
            } else {
                raw[i] = byte;
            }
            let _ = parse_response(&raw);
        }

        #[test]
        fn response_status_and_body_are_read_back((raw, status, body) in response()) {
            let r = parse_response(&raw)
                .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&raw))))?;
            prop_assert_eq!(r.status, status);
            prop_assert_eq!(r.body, String::from_utf8_lossy(&body).into_owned(),
                "raw: {:?}", String::from_utf8_lossy(&raw));
        }

        #[test]
        fn json_count_arbitrary_never_panics(text in any::<String>(), field in prop::option::of(tricky(6))) {
            let _ = json_count(&text, field.as_deref());
            let _ = json_count(&text, None);
        }

        #[test]
        fn json_count_counts((value, field) in counted_json(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let want = match (&value, &field) {
                (Value::Array(a), _) => Some(a.len()),
                (Value::Object(m), Some(f)) => m.get(f).and_then(Value::as_array).map(Vec::len),
                _ => None,
            };
            let got = json_count(&text, field.as_deref());
            prop_assert_eq!(got.clone().ok(), want, "{:?} on {}", got, text);
        }
    }
}

// ---- slug ----

mod slug {
    use super::*;
    use kinfra::slug::{MAX_PROJECT_NAME, is_valid_project_name, slugify};

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => tricky(24),
            1 => any::<String>(),
            1 => "[A-Za-z0-9 _/.-]{0,24}",
        ]
    }

    fn model_valid(id: &str) -> bool {
        let b = id.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_PROJECT_NAME
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn slugify_is_clean_and_idempotent(s in name()) {
            let slug = slugify(&s);
            prop_assert!(
                slug.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
                "{:?} -> {:?}", s, slug
            );
            prop_assert!(!slug.starts_with('-') && !slug.ends_with('-'), "{:?} -> {:?}", s, slug);
            prop_assert!(!slug.contains("--"), "{:?} -> {:?}", s, slug);
            prop_assert_eq!(slugify(&slug), slug.clone());
            if !slug.is_empty() && slug.len() <= MAX_PROJECT_NAME {
                prop_assert!(is_valid_project_name(&slug), "{:?}", slug);
            }
            // ASCII alphanumerics survive, in order.
            let kept: String = s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
            let slug_alnum: String = slug.chars().filter(|c| *c != '-').collect();
            if s.is_ascii() {
                prop_assert_eq!(slug_alnum, kept);
            }
        }

        #[test]
        fn project_name_matches_the_rule(s in prop_oneof![name(), "[a-z0-9][a-z0-9_-]{0,70}"]) {
            prop_assert_eq!(is_valid_project_name(&s), model_valid(&s), "{:?}", s);
        }
    }
}

// ---- secrets ----

mod secrets {
    use super::*;
    use kinfra::secrets::concealed_fields;
    use serde_json::{Map, Value};
    use std::collections::BTreeMap;

    fn maybe(good: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            6 => good.prop_map(Some),
            1 => Just(None),
            1 => super::registry::json_value().prop_map(Some),
        ]
        .boxed()
    }

    fn field() -> impl Strategy<Value = Value> {
        (
            maybe(
                prop::sample::select(vec!["CONCEALED", "STRING", "concealed", "OTP", ""])
                    .prop_map(Value::from)
                    .boxed(),
            ),
            maybe(tricky(8).prop_map(Value::from).boxed()),
            maybe(tricky(8).prop_map(Value::from).boxed()),
            maybe("[a-z]{1,4}".prop_map(Value::from).boxed()),
        )
            .prop_map(|(t, label, value, id)| {
                let mut m = Map::new();
                for (k, v) in [("type", t), ("label", label), ("value", value), ("id", id)] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m)
            })
    }

    fn document() -> impl Strategy<Value = Value> {
        (
            prop_oneof![
                6 => prop::collection::vec(field(), 0..6).prop_map(|f| Some(Value::Array(f))),
                1 => Just(None),
                1 => super::registry::json_value().prop_map(Some),
            ],
            prop::collection::vec(("[a-z]{1,6}", super::registry::json_value()), 0..3),
            any::<bool>(),
        )
            .prop_map(|(fields, extra, top_is_object)| {
                let mut m: Map<String, Value> = extra.into_iter().collect();
                if let Some(f) = fields {
                    m.insert("fields".into(), f);
                }
                if top_is_object {
                    Value::Object(m)
                } else {
                    Value::Array(vec![Value::Object(m)])
                }
            })
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = concealed_fields(&text);
        }

        #[test]
        fn keeps_exactly_the_concealed_string_fields(doc in document()) {
            let text = serde_json::to_string(&doc).unwrap();
            let want = doc.get("fields").and_then(Value::as_array).map(|fields| {
                let mut out = BTreeMap::new();
                for f in fields {
                    if f.get("type").and_then(Value::as_str) != Some("CONCEALED") {
                        continue;
                    }
                    if let (Some(l), Some(v)) = (
                        f.get("label").and_then(Value::as_str),
                        f.get("value").and_then(Value::as_str),
                    ) {
                        out.insert(l.to_string(), v.to_string());
                    }
                }
                out
            });
            let got = concealed_fields(&text);
            match want {
                Some(want) => prop_assert_eq!(got, Ok(want)),
                None => prop_assert!(got.is_err()),
            }
        }
    }
}
