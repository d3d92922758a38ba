//! Compose-file variable interpolation (the Compose Specification's rules): `$VAR`,
//! `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`,
//! `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal `$`. Defaults, alternatives and
//! messages may themselves hold interpolations (`${A:-${B:-x}}`).
//!
//! Besides the substituted text, [`interpolate`] says which variables were used unset
//! (compose replaces them with "" and warns) and which part of the output each top-level
//! reference produced, so a caller can tell that a port's host side came from
//! `${KTRDR_API_PORT:-8000}`. [`references`] lists the references without substituting.

use std::ops::Range;

/// Nesting deeper than this in one string is refused rather than risking the stack.
const MAX_NESTING: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("unclosed `${{` in `{fragment}`")]
    Unterminated { fragment: String },
    #[error("empty variable name in `{fragment}`")]
    EmptyName { fragment: String },
    #[error("`{name}` is not a variable name (in `{fragment}`)")]
    BadName { name: String, fragment: String },
    #[error(
        "unknown modifier `{modifier}` after `{name}` in `{fragment}` (expected `:-`, `-`, `:?`, `?`, `:+` or `+`)"
    )]
    BadModifier {
        name: String,
        modifier: String,
        fragment: String,
    },
    #[error(
        "`$` must be followed by a name, `{{` or `$` (in `{fragment}`; write `$$` for a literal `$`)"
    )]
    LoneDollar { fragment: String },
    #[error("interpolation nested more than {MAX_NESTING} levels deep in `{fragment}`")]
    TooDeep { fragment: String },
    #[error("required variable `{name}` is missing a value: {message}")]
    Required { name: String, message: String },
}

impl crate::error::Diagnostic for InterpolateError {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Failure
    }

    fn hint(&self) -> Option<String> {
        match self {
            InterpolateError::Required { name, .. } => Some(format!(
                "set `{name}` in the environment or in the instance's env file"
            )),
            InterpolateError::LoneDollar { .. } => {
                Some("write `$$` where the compose file means a literal `$`".into())
            }
            _ => None,
        }
    }
}

/// How a reference treats its variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VarKind {
    /// `$VAR` or `${VAR}`: the value, "" when unset.
    Plain,
    /// `${VAR:-default}`: the default when unset or empty.
    DefaultIfUnsetOrEmpty,
    /// `${VAR-default}`: the default when unset.
    DefaultIfUnset,
    /// `${VAR:?message}`: an error when unset or empty.
    RequiredNonEmpty,
    /// `${VAR?message}`: an error when unset.
    Required,
    /// `${VAR:+alt}`: the alternative when set and not empty, else "".
    AltIfNonEmpty,
    /// `${VAR+alt}`: the alternative when set, else "".
    AltIfSet,
}

impl VarKind {
    fn operator(self) -> &'static str {
        match self {
            VarKind::Plain => "",
            VarKind::DefaultIfUnsetOrEmpty => ":-",
            VarKind::DefaultIfUnset => "-",
            VarKind::RequiredNonEmpty => ":?",
            VarKind::Required => "?",
            VarKind::AltIfNonEmpty => ":+",
            VarKind::AltIfSet => "+",
        }
    }
}

/// One variable reference as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VarRef {
    pub name: String,
    pub kind: VarKind,
    /// The text after the operator, as written (not interpolated): the default for
    /// `:-`/`-`, the alternative for `:+`/`+`, the message for `:?`/`?`; `None` for
    /// [`VarKind::Plain`].
    pub default: Option<String>,
}

impl VarRef {
    /// The fallback used when the variable is unset, as written (`:-` and `-` only).
    pub fn default_value(&self) -> Option<&str> {
        match self.kind {
            VarKind::DefaultIfUnsetOrEmpty | VarKind::DefaultIfUnset => self.default.as_deref(),
            _ => None,
        }
    }
}

impl std::fmt::Display for VarRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.default {
            None => write!(f, "${{{}}}", self.name),
            Some(d) => write!(f, "${{{}{}{}}}", self.name, self.kind.operator(), d),
        }
    }
}

/// What one top-level reference produced, in byte offsets of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    pub var: VarRef,
    pub output: Range<usize>,
}

/// The result of [`interpolate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interpolated {
    pub value: String,
    /// Variables used without a default while unset (they became ""), in order of use,
    /// each once.
    pub unset: Vec<String>,
    /// One entry per top-level reference, in order.
    pub substitutions: Vec<Substitution>,
}

/// Substitute every reference in `text`, looking variables up with `lookup`.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, InterpolateError> {
    if !text.contains('$') {
        return Ok(Interpolated {
            value: text.to_string(),
            ..Interpolated::default()
        });
    }
    let parts = parse(text, 0)?;
    let mut out = Interpolated::default();
    let mut value = String::with_capacity(text.len());
    eval(
        &parts,
        lookup,
        &mut value,
        &mut out.unset,
        Some(&mut out.substitutions),
    )?;
    out.value = value;
    Ok(out)
}

/// The top-level references in `text`, in order, without substituting (a reference
/// inside another's default shows in that default's text).
pub fn references(text: &str) -> Result<Vec<VarRef>, InterpolateError> {
    if !text.contains('$') {
        return Ok(Vec::new());
    }
    Ok(parse(text, 0)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Var(v) => Some(v.var),
            Part::Lit(_) => None,
        })
        .collect())
}

#[derive(Debug)]
enum Part<'a> {
    Lit(&'a str),
    Var(Var<'a>),
}

#[derive(Debug)]
struct Var<'a> {
    var: VarRef,
    /// The parsed argument of the operator, for evaluation.
    arg: Vec<Part<'a>>,
}

fn is_name_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// A short excerpt starting at `at`, for error messages.
fn fragment(text: &str, at: usize) -> String {
    let rest = text.get(at..).unwrap_or("");
    let mut end = rest.len().min(40);
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    if end < rest.len() {
        format!("{}…", &rest[..end])
    } else {
        rest.to_string()
    }
}

fn parse(text: &str, depth: usize) -> Result<Vec<Part<'_>>, InterpolateError> {
    if depth > MAX_NESTING {
        return Err(InterpolateError::TooDeep {
            fragment: fragment(text, 0),
        });
    }
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if lit_start < i {
            parts.push(Part::Lit(&text[lit_start..i]));
        }
        let dollar = i;
        match bytes.get(i + 1) {
            Some(b'$') => {
                parts.push(Part::Lit("$"));
                i += 2;
            }
            Some(b'{') => {
                let (var, end) = parse_braced(text, dollar, depth)?;
                parts.push(Part::Var(var));
                i = end;
            }
            Some(&c) if is_name_start(c) => {
                let mut end = i + 1;
                while end < bytes.len() && is_name_char(bytes[end]) {
                    end += 1;
                }
                parts.push(Part::Var(Var {
                    var: VarRef {
                        name: text[i + 1..end].to_string(),
                        kind: VarKind::Plain,
                        default: None,
                    },
                    arg: Vec::new(),
                }));
                i = end;
            }
            _ => {
                return Err(InterpolateError::LoneDollar {
                    fragment: fragment(text, dollar),
                });
            }
        }
        lit_start = i;
    }
    if lit_start < bytes.len() {
        parts.push(Part::Lit(&text[lit_start..]));
    }
    Ok(parts)
}

/// Parse `${…}` starting at the `$` at `dollar`; returns the reference and the index
/// just past its closing `}`.
fn parse_braced(
    text: &str,
    dollar: usize,
    depth: usize,
) -> Result<(Var<'_>, usize), InterpolateError> {
    let bytes = text.as_bytes();
    let frag = || fragment(text, dollar);
    let name_start = dollar + 2;
    let mut i = name_start;
    while i < bytes.len() && is_name_char(bytes[i]) {
        i += 1;
    }
    let name = &text[name_start..i];
    let Some(&next) = bytes.get(i) else {
        return Err(InterpolateError::Unterminated { fragment: frag() });
    };
    if name.is_empty() {
        if next == b'}' || matches!(next, b':' | b'-' | b'?' | b'+') {
            return Err(InterpolateError::EmptyName { fragment: frag() });
        }
        let bad = bad_name(text, name_start);
        return Err(InterpolateError::BadName {
            name: bad,
            fragment: frag(),
        });
    }
    if !is_name_start(bytes[name_start]) {
        return Err(InterpolateError::BadName {
            name: name.to_string(),
            fragment: frag(),
        });
    }
    let simple = |kind, arg_text: Option<&str>, arg| Var {
        var: VarRef {
            name: name.to_string(),
            kind,
            default: arg_text.map(str::to_string),
        },
        arg,
    };
    if next == b'}' {
        return Ok((simple(VarKind::Plain, None, Vec::new()), i + 1));
    }
    let (kind, op_len) = match (next, bytes.get(i + 1)) {
        (b':', Some(b'-')) => (VarKind::DefaultIfUnsetOrEmpty, 2),
        (b':', Some(b'?')) => (VarKind::RequiredNonEmpty, 2),
        (b':', Some(b'+')) => (VarKind::AltIfNonEmpty, 2),
        (b'-', _) => (VarKind::DefaultIfUnset, 1),
        (b'?', _) => (VarKind::Required, 1),
        (b'+', _) => (VarKind::AltIfSet, 1),
        (b':', None) => return Err(InterpolateError::Unterminated { fragment: frag() }),
        _ => {
            return Err(InterpolateError::BadModifier {
                name: name.to_string(),
                modifier: text[i..]
                    .chars()
                    .take_while(|&c| c != '}')
                    .take(10)
                    .collect(),
                fragment: frag(),
            });
        }
    };
    let arg_start = i + op_len;
    let arg_end = closing_brace(bytes, arg_start)
        .ok_or_else(|| InterpolateError::Unterminated { fragment: frag() })?;
    let arg_text = &text[arg_start..arg_end];
    let arg = parse(arg_text, depth + 1)?;
    Ok((simple(kind, Some(arg_text), arg), arg_end + 1))
}

/// The offending name characters after `${`, for the message.
fn bad_name(text: &str, start: usize) -> String {
    text[start..]
        .chars()
        .take_while(|c| !matches!(c, '}' | ':' | '-' | '?' | '+'))
        .take(20)
        .collect()
}

/// Index of the `}` closing the argument that starts at `start`: nested `${` open a
/// level, `$$` is skipped, the first `}` at level zero closes (as compose does).
fn closing_brace(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn eval(
    parts: &[Part<'_>],
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    unset: &mut Vec<String>,
    mut subs: Option<&mut Vec<Substitution>>,
) -> Result<(), InterpolateError> {
    for part in parts {
        match part {
            Part::Lit(s) => out.push_str(s),
            Part::Var(v) => {
                let start = out.len();
                eval_var(v, lookup, out, unset)?;
                if let Some(subs) = subs.as_deref_mut() {
                    subs.push(Substitution {
                        var: v.var.clone(),
                        output: start..out.len(),
                    });
                }
            }
        }
    }
    Ok(())
}

fn eval_var(
    v: &Var<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    unset: &mut Vec<String>,
) -> Result<(), InterpolateError> {
    let name = &v.var.name;
    let value = lookup(name);
    let non_empty = value.as_deref().is_some_and(|s| !s.is_empty());
    let use_arg = match v.var.kind {
        VarKind::Plain => {
            match value {
                Some(s) => out.push_str(&s),
                None => {
                    if !unset.contains(name) {
                        unset.push(name.clone());
                    }
                }
            }
            return Ok(());
        }
        VarKind::DefaultIfUnsetOrEmpty => !non_empty,
        VarKind::DefaultIfUnset => value.is_none(),
        VarKind::RequiredNonEmpty | VarKind::Required => {
            let missing = if v.var.kind == VarKind::Required {
                value.is_none()
            } else {
                !non_empty
            };
            if missing {
                let mut message = String::new();
                eval(&v.arg, lookup, &mut message, unset, None)?;
                return Err(InterpolateError::Required {
                    name: name.clone(),
                    message,
                });
            }
            false
        }
        VarKind::AltIfNonEmpty => {
            if non_empty {
                eval(&v.arg, lookup, out, unset, None)?;
            }
            return Ok(());
        }
        VarKind::AltIfSet => {
            if value.is_some() {
                eval(&v.arg, lookup, out, unset, None)?;
            }
            return Ok(());
        }
    };
    if use_arg {
        eval(&v.arg, lookup, out, unset, None)
    } else {
        out.push_str(value.as_deref().unwrap_or(""));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn sub(text: &str, pairs: &[(&str, &str)]) -> String {
        interpolate(text, &env(pairs)).unwrap().value
    }

    fn err(text: &str, pairs: &[(&str, &str)]) -> InterpolateError {
        interpolate(text, &env(pairs)).unwrap_err()
    }

    #[test]
    fn plain_forms() {
        let e = [("A", "1"), ("B_2", "two")];
        assert_eq!(sub("no vars", &e), "no vars");
        assert_eq!(sub("$A", &e), "1");
        assert_eq!(sub("x${A}y", &e), "x1y");
        assert_eq!(sub("$B_2-$A", &e), "two-1");
        assert_eq!(sub("$A.$A", &e), "1.1");
        assert_eq!(sub("cost $$5 and $${A}", &e), "cost $5 and ${A}");
    }

    #[test]
    fn unset_without_default_is_empty_and_reported_once() {
        let r = interpolate("${X}:$X:${Y}", &env(&[])).unwrap();
        assert_eq!(r.value, "::");
        assert_eq!(r.unset, ["X", "Y"]);
    }

    #[test]
    fn defaults() {
        let e = [("SET", "v"), ("EMPTY", "")];
        assert_eq!(sub("${SET:-d}", &e), "v");
        assert_eq!(sub("${EMPTY:-d}", &e), "d");
        assert_eq!(sub("${NONE:-d}", &e), "d");
        assert_eq!(sub("${SET-d}", &e), "v");
        assert_eq!(sub("${EMPTY-d}", &e), "");
        assert_eq!(sub("${NONE-d}", &e), "d");
        assert_eq!(sub("${NONE:-}", &e), "");
        assert_eq!(sub("${NONE:-a b:c-d}", &e), "a b:c-d");
        // A default used is not an unset variable to warn about.
        assert!(
            interpolate("${NONE:-d}", &env(&e))
                .unwrap()
                .unset
                .is_empty()
        );
    }

    #[test]
    fn nested_defaults() {
        let e = [("B", "b")];
        assert_eq!(sub("${A:-${B:-x}}", &e), "b");
        assert_eq!(sub("${A:-${C:-x}}", &e), "x");
        assert_eq!(sub("${A:-pre-${B}-post}", &e), "pre-b-post");
        assert_eq!(sub("${A:-${C:-${D:-deep}}}!", &e), "deep!");
        let r = interpolate("${A:-${C}}", &env(&e)).unwrap();
        assert_eq!(r.unset, ["C"]);
        // An unused default is not evaluated, so its variables are not reported.
        let r = interpolate("${B:-${C}}", &env(&e)).unwrap();
        assert!(r.unset.is_empty());
    }

    #[test]
    fn alternatives() {
        let e = [("SET", "v"), ("EMPTY", "")];
        assert_eq!(sub("${SET:+alt}", &e), "alt");
        assert_eq!(sub("${EMPTY:+alt}", &e), "");
        assert_eq!(sub("${NONE:+alt}", &e), "");
        assert_eq!(sub("${SET+alt}", &e), "alt");
        assert_eq!(sub("${EMPTY+alt}", &e), "alt");
        assert_eq!(sub("${NONE+alt}", &e), "");
        assert_eq!(sub("${SET:+[${SET}]}", &e), "[v]");
    }

    #[test]
    fn required() {
        let e = [("SET", "v"), ("EMPTY", ""), ("WHY", "the API")];
        assert_eq!(sub("${SET:?need it}", &e), "v");
        assert_eq!(sub("${EMPTY?need it}", &e), "");
        assert_eq!(
            err("${EMPTY:?need it}", &e),
            InterpolateError::Required {
                name: "EMPTY".into(),
                message: "need it".into()
            }
        );
        assert_eq!(
            err("${NONE?set it for ${WHY}}", &e),
            InterpolateError::Required {
                name: "NONE".into(),
                message: "set it for the API".into()
            }
        );
        assert_eq!(
            err("${NONE:?}", &e).to_string(),
            "required variable `NONE` is missing a value: "
        );
    }

    #[test]
    fn invalid_syntax_says_what_is_wrong() {
        let e = [];
        assert!(matches!(
            err("${", &e),
            InterpolateError::Unterminated { .. }
        ));
        assert!(matches!(
            err("a ${A", &e),
            InterpolateError::Unterminated { .. }
        ));
        assert!(matches!(
            err("${A:-x", &e),
            InterpolateError::Unterminated { .. }
        ));
        assert!(matches!(
            err("${A:", &e),
            InterpolateError::Unterminated { .. }
        ));
        assert!(matches!(err("${}", &e), InterpolateError::EmptyName { .. }));
        assert!(matches!(
            err("${:-x}", &e),
            InterpolateError::EmptyName { .. }
        ));
        assert!(matches!(err("${1A}", &e), InterpolateError::BadName { .. }));
        assert!(matches!(
            err("${A B}", &e),
            InterpolateError::BadModifier { .. }
        ));
        assert!(matches!(err("${é}", &e), InterpolateError::BadName { .. }));
        assert!(matches!(err("$", &e), InterpolateError::LoneDollar { .. }));
        assert!(matches!(
            err("a $ b", &e),
            InterpolateError::LoneDollar { .. }
        ));
        assert!(matches!(err("$1", &e), InterpolateError::LoneDollar { .. }));
        let bad = err("${VAR:bad}", &e);
        assert_eq!(
            bad.to_string(),
            "unknown modifier `:bad` after `VAR` in `${VAR:bad}` (expected `:-`, `-`, `:?`, `?`, `:+` or `+`)"
        );
        assert_eq!(err("${", &e).to_string(), "unclosed `${` in `${`");
    }

    #[test]
    fn too_deep_nesting_is_an_error_not_a_crash() {
        let text = format!("{}x{}", "${A:-".repeat(200), "}".repeat(200));
        assert!(matches!(err(&text, &[]), InterpolateError::TooDeep { .. }));
        let ok = format!("{}x{}", "${A:-".repeat(10), "}".repeat(10));
        assert_eq!(sub(&ok, &[]), "x");
    }

    #[test]
    fn substitutions_say_which_output_each_reference_made() {
        let r = interpolate(
            "127.0.0.1:${KTRDR_API_PORT:-8000}:8000",
            &env(&[("KTRDR_API_PORT", "8003")]),
        )
        .unwrap();
        assert_eq!(r.value, "127.0.0.1:8003:8000");
        assert_eq!(r.substitutions.len(), 1);
        let s = &r.substitutions[0];
        assert_eq!(s.output, 10..14);
        assert_eq!(&r.value[s.output.clone()], "8003");
        assert_eq!(s.var.name, "KTRDR_API_PORT");
        assert_eq!(s.var.default.as_deref(), Some("8000"));
        assert_eq!(s.var.kind, VarKind::DefaultIfUnsetOrEmpty);
    }

    #[test]
    fn references_without_substituting() {
        let refs = references("${KTRDR_API_PORT:-8000}:8000 $X ${Y-a} ${Z:?m} ${W+w} $$Q").unwrap();
        let got: Vec<(&str, VarKind, Option<&str>)> = refs
            .iter()
            .map(|r| (r.name.as_str(), r.kind, r.default.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "KTRDR_API_PORT",
                    VarKind::DefaultIfUnsetOrEmpty,
                    Some("8000")
                ),
                ("X", VarKind::Plain, None),
                ("Y", VarKind::DefaultIfUnset, Some("a")),
                ("Z", VarKind::RequiredNonEmpty, Some("m")),
                ("W", VarKind::AltIfSet, Some("w")),
            ]
        );
        assert_eq!(refs[0].default_value(), Some("8000"));
        assert_eq!(refs[3].default_value(), None);
        assert_eq!(refs[0].to_string(), "${KTRDR_API_PORT:-8000}");
        let nested = references("${A:-${B:-x}}").unwrap();
        assert_eq!(nested.len(), 1);
        assert_eq!(nested[0].default.as_deref(), Some("${B:-x}"));
        assert!(references("plain").unwrap().is_empty());
        assert!(references("${").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(text in "(\\$|\\{|\\}|:|-|\\?|\\+|[A-Z_]|[a-z0-9]|é| ){0,40}") {
            let lookup = env(&[("A", "1"), ("B", "")]);
            let _ = interpolate(&text, &lookup);
            let _ = references(&text);
        }

        #[test]
        fn text_without_dollar_is_unchanged(text in "[^$]{0,60}") {
            prop_assert_eq!(sub(&text, &[]), text);
        }
    }
}
