//! Query strings for the Engine API: the `filters` parameter (a JSON object of lists,
//! URL-encoded, as the API wants it) and percent-encoding of path segments and values.

use std::collections::BTreeMap;

/// A filter for list and event calls, built up one term at a time. Terms with the same
/// key are alternatives (any may match); different keys must all match — the engine's
/// own rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    terms: BTreeMap<String, Vec<String>>,
}

impl Filters {
    pub fn new() -> Filters {
        Filters::default()
    }

    /// Any filter term: `key=value`.
    pub fn add(mut self, key: &str, value: &str) -> Filters {
        let values = self.terms.entry(key.to_string()).or_default();
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
        }
        self
    }

    /// Objects that carry label `key` (any value).
    pub fn label(self, key: &str) -> Filters {
        self.add("label", key)
    }

    /// Objects whose label `key` is `value`.
    pub fn label_value(self, key: &str, value: &str) -> Filters {
        self.add("label", &format!("{key}={value}"))
    }

    /// Objects whose name contains `name` (the engine matches names as patterns; compare
    /// the results exactly when it matters).
    pub fn name(self, name: &str) -> Filters {
        self.add("name", name)
    }

    /// Objects whose id starts with `id`.
    pub fn id(self, id: &str) -> Filters {
        self.add("id", id)
    }

    /// Events about objects of this kind (`container`, `network`, `volume`, …).
    pub fn of_type(self, kind: &str) -> Filters {
        self.add("type", kind)
    }

    /// Events with this action (`start`, `die`, `health_status`, …).
    pub fn event(self, action: &str) -> Filters {
        self.add("event", action)
    }

    /// Events about this container (name or id).
    pub fn container(self, name_or_id: &str) -> Filters {
        self.add("container", name_or_id)
    }

    /// Events about this volume.
    pub fn volume(self, name: &str) -> Filters {
        self.add("volume", name)
    }

    /// Containers in this state (`running`, `exited`, `created`, …).
    pub fn status(self, status: &str) -> Filters {
        self.add("status", status)
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The JSON the API expects: `{"label":["a=b"],"type":["volume"]}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.terms).unwrap_or_else(|_| "{}".into())
    }
}

/// Build a query string, encoding each value.
#[derive(Debug, Default)]
pub(crate) struct Query {
    text: String,
}

impl Query {
    pub(crate) fn new() -> Query {
        Query::default()
    }

    pub(crate) fn pair(mut self, key: &str, value: &str) -> Query {
        self.text.push(if self.text.is_empty() { '?' } else { '&' });
        self.text.push_str(key);
        self.text.push('=');
        self.text.push_str(&percent_encode(value));
        self
    }

    pub(crate) fn filters(self, filters: &Filters) -> Query {
        if filters.is_empty() {
            self
        } else {
            self.pair("filters", &filters.to_json())
        }
    }

    /// `?a=b&c=d`, or nothing.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// Percent-encode everything but RFC 3986's unreserved characters, so any name, path
/// or JSON survives as one query value or path segment.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_encode_as_json_lists_per_key() {
        let f = Filters::new()
            .label_value("com.docker.compose.project", "ktrdr--a")
            .label("kinfra.test")
            .of_type("volume")
            .name("x")
            .name("x");
        assert_eq!(
            f.to_json(),
            r#"{"label":["com.docker.compose.project=ktrdr--a","kinfra.test"],"name":["x"],"type":["volume"]}"#
        );
        assert_eq!(Filters::new().to_json(), "{}");
        assert!(Filters::new().is_empty());
    }

    #[test]
    fn queries_are_percent_encoded() {
        let q = Query::new()
            .pair("all", "1")
            .filters(&Filters::new().label_value("a b", "é/&"))
            .filters(&Filters::new());
        assert_eq!(
            q.as_str(),
            "?all=1&filters=%7B%22label%22%3A%5B%22a%20b%3D%C3%A9%2F%26%22%5D%7D"
        );
        assert_eq!(Query::new().as_str(), "");
        assert_eq!(percent_encode("abc-._~XYZ09"), "abc-._~XYZ09");
        assert_eq!(percent_encode("/data/a b"), "%2Fdata%2Fa%20b");
    }
}
