//! Instance names: slugs for directory names and the compose project-name rule.

/// Longest compose project name Docker accepts.
pub const MAX_PROJECT_NAME: usize = 63;

/// Lowercase; every char outside `[a-z0-9-]` becomes `-`; runs of `-` collapse;
/// leading/trailing `-` stripped. `My Feature!` → `my-feature`, `café` → `caf`.
pub fn slugify(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Whether `id` is a valid compose project name: `^[a-z0-9][a-z0-9_-]*$`, ≤ 63 chars.
pub fn is_valid_project_name(id: &str) -> bool {
    let mut chars = id.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    id.len() <= MAX_PROJECT_NAME
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_matches_the_spec_examples() {
        assert_eq!(slugify("My Feature!"), "my-feature");
        assert_eq!(slugify("feature/branch"), "feature-branch");
        assert_eq!(slugify("café"), "caf");
        assert_eq!(slugify("a__b  c"), "a-b-c");
        assert_eq!(slugify("--x--"), "x");
        assert_eq!(slugify("UPPER_case"), "upper-case");
    }

    #[test]
    fn slugify_can_be_empty() {
        for name in ["---", "..", "!!!", "", "ééé"] {
            assert_eq!(slugify(name), "", "{name}");
        }
    }

    #[test]
    fn project_names() {
        assert!(is_valid_project_name("ktrdr--feat-x"));
        assert!(is_valid_project_name("a_b"));
        assert!(is_valid_project_name("0abc"));
        assert!(!is_valid_project_name(""));
        assert!(!is_valid_project_name("-abc"));
        assert!(!is_valid_project_name("_abc"));
        assert!(!is_valid_project_name("Abc"));
        assert!(!is_valid_project_name("a.b"));
        assert!(is_valid_project_name(&"a".repeat(63)));
        assert!(!is_valid_project_name(&"a".repeat(64)));
    }
}
