//! The parsed file as a tree of key paths: where each key sits in the file,
//! and which values no message may show.
//!
//! Problems are found stage by stage (interpolation, unknown keys, types,
//! validation), each in its own order; they are reported in the order of the
//! file instead, so that the first problem listed is the first one a reader
//! meets. The parsers keep keys in file order (`preserve_order`), so a
//! walk of the parsed value numbers every key as it appears in the file.
//!
//! Configuration errors end up in pod and CI logs, so a message never shows a
//! secret: the values under the schema's secret keys (the session secrets,
//! client secrets, the Redis URLs, which may carry a password, and the keys
//! naming their files) and every value that took an environment variable,
//! where secrets usually come from.

use std::collections::HashMap;

use serde_json::Value;

use super::Problem;
use super::unknown::{Segment, format_path};

/// A key or list entry of the file.
struct Place {
    segments: Vec<Segment>,
    /// Its number in file order (0 is the root).
    number: usize,
    /// The number of the last key or entry inside it (its own when none).
    last_inside: usize,
}

/// Why a value is kept out of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    Secret,
    FromEnvironment,
}

impl Hidden {
    fn reason(self) -> &'static str {
        match self {
            Hidden::Secret => "value hidden: it is a secret",
            Hidden::FromEnvironment => "value hidden: it comes from an environment variable",
        }
    }
}

pub struct Document<'a> {
    root: &'a Value,
    /// Every key and list entry, by formatted path.
    places: HashMap<String, Place>,
    /// Paths of the strings a variable was substituted into.
    from_environment: Vec<Vec<Segment>>,
}

impl<'a> Document<'a> {
    pub fn new(root: &'a Value, from_environment: Vec<Vec<Segment>>) -> Self {
        let mut places = HashMap::new();
        number(root, &mut Vec::new(), &mut places);
        Document {
            root,
            places,
            from_environment,
        }
    }

    /// Sorts `problems` into file order. A problem about a key that is not in
    /// the file (one that is required, say) comes at the end of the nearest
    /// map or list around it that is, where a reader would find it missing.
    /// The sort is stable: problems about one key keep the order the checks
    /// found them in.
    pub fn sort_in_file_order(&self, problems: &mut [Problem]) {
        problems.sort_by_cached_key(|problem| self.order(&problem.path));
    }

    /// Where a problem about `path` goes: after the key numbered `.0`, and
    /// after whatever else is about that key when `.1` is true.
    fn order(&self, path: &str) -> (usize, bool) {
        if let Some(place) = self.places.get(path) {
            return (place.number, false);
        }
        let mut around = path;
        loop {
            // `a.b[2].c` → `a.b[2]` → `a.b` → `a` → the root, "".
            around = around.rfind(['.', '[']).map_or("", |end| &around[..end]);
            if let Some(place) = self.places.get(around) {
                return (place.last_inside, true);
            }
            if around.is_empty() {
                return (0, true);
            }
        }
    }

    /// The value at `segments`, if the file has one there.
    pub fn value_at(&self, segments: &[Segment]) -> Option<&'a Value> {
        value_at(self.root, segments)
    }

    /// Whether a message about the value at `segments` must not show it: it
    /// is, or is under, a secret key or a value from the environment; or one
    /// is inside it. `is_secret` says which keys are secret.
    fn hidden(&self, segments: &[Segment], is_secret: fn(&[Segment]) -> bool) -> Option<Hidden> {
        let related =
            |other: &[Segment]| other.starts_with(segments) || segments.starts_with(other);
        let secret_inside = || {
            self.places
                .values()
                .map(|place| place.segments.as_slice())
                .any(|other| other.starts_with(segments) && is_secret(other))
        };
        if is_secret(segments) || secret_inside() {
            Some(Hidden::Secret)
        } else if self.from_environment.iter().any(|other| related(other)) {
            Some(Hidden::FromEnvironment)
        } else {
            None
        }
    }

    /// The message for a value of the wrong type at `segments`, without the
    /// value (see [`wrong_type`]).
    pub fn type_error(&self, segments: &[Segment], error: &serde_json::Error) -> String {
        // A `*_file` key's value is a path, but one of the wrong type may well
        // be the secret itself, pasted in the wrong place.
        let is_secret =
            |segments: &[Segment]| is_secret_key(segments) || names_secret_file(segments);
        wrong_type(
            error,
            self.value_at(segments),
            self.hidden(segments, is_secret),
        )
    }

    /// Removes hidden values at or under its path from a validation
    /// problem's message. Checks quote the values they talk about in
    /// backticks; a long value is also removed wherever it appears (a path in
    /// "cannot read …"), which a short one cannot be without mangling the
    /// sentence. Fixes are left alone: they are fixed sentences (which a
    /// hidden value may happen to occur in: `https://idp.example.com`).
    ///
    /// File paths are shown unless they came from the environment: they are
    /// not secrets, and "cannot read" is no help without them.
    pub fn redact(&self, problem: &mut Problem) {
        let Some(Place { segments, .. }) = self.places.get(&problem.path) else {
            return;
        };
        let hidden_strings = self
            .places
            .values()
            .map(|place| place.segments.as_slice())
            .filter(|other| {
                other.starts_with(segments) && self.hidden(other, is_secret_key).is_some()
            })
            .filter_map(|other| self.value_at(other)?.as_str())
            .filter(|text| !text.is_empty());
        for text in hidden_strings {
            let message = &mut problem.message;
            *message = message.replace(&format!("`{text}`"), "`[hidden]`");
            if text.len() >= 8 {
                *message = message.replace(text, "[hidden]");
            }
        }
    }
}

/// Whether `segments` is, or is under, a key whose value is a secret.
fn is_secret_key(segments: &[Segment]) -> bool {
    matches!(
        keys(segments).as_slice(),
        ["sessions", "secrets", ..]
            | ["sessions", "redis", "url", ..]
            | ["sessions", "redis", "cluster", ..]
            | [
                "listeners",
                "rules",
                "actions",
                "authenticate_oidc",
                "client_secret",
                ..
            ]
            | [
                "listeners",
                "rules",
                "actions",
                "authenticate_cognito",
                "user_pool_client_secret",
                ..
            ]
    )
}

/// Whether `segments` is, or is under, a key naming a file that holds a
/// secret (the `*_file` twins, and the signing key).
fn names_secret_file(segments: &[Segment]) -> bool {
    matches!(
        keys(segments).as_slice(),
        ["sessions", "secrets_file", ..]
            | ["sessions", "redis", "url_file", ..]
            | ["signing", "private_key_file", ..]
            | [
                "listeners",
                "rules",
                "actions",
                "authenticate_oidc",
                "client_secret_file",
                ..
            ]
            | [
                "listeners",
                "rules",
                "actions",
                "authenticate_cognito",
                "user_pool_client_secret_file",
                ..
            ]
    )
}

/// The message for `got`, a value of the wrong type, which never quotes it
/// (serde's does): what the key takes and what it got, and why the value is
/// not shown when it is `hidden`. serde's own message is kept when it
/// quotes no value (`missing field …`) and nothing is hidden.
pub fn wrong_type(
    error: &serde_json::Error,
    got: Option<&Value>,
    hidden: Option<Hidden>,
) -> String {
    let message = error.to_string();
    let got = got.map_or("a value", kind);
    // serde words a type error `invalid type: <the value>, expected <the
    // type>`; the part after the value names no value.
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, expected)| plain(expected));
    match (hidden, expected) {
        // Not hidden, but a value of the wrong shape may still be a secret
        // pasted in the wrong place (`redis: "redis://:pw@host"` for the
        // `redis` map): serde's quote of it is never needed.
        (None, Some(expected)) if quotes_the_value(&message) => {
            format!("expected {expected}, got {got}")
        }
        (None, _) => message,
        (Some(hidden), Some(expected)) => {
            format!("expected {expected}, got {got} ({})", hidden.reason())
        }
        (Some(hidden), None) => format!("this key does not take {got} ({})", hidden.reason()),
    }
}

/// The value at `segments` in `root`, if there is one.
pub fn value_at<'a>(root: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    segments
        .iter()
        .try_fold(root, |value, segment| match segment {
            Segment::Key(key) => value.get(key),
            Segment::Index(index) => value.get(index),
        })
}

/// The keys of a path, without list indices, as in
/// [`super::unknown::known_keys`].
pub fn keys(segments: &[Segment]) -> Vec<&str> {
    segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect()
}

/// Numbers every key and entry of `value` in file order (pre-order).
fn number(value: &Value, path: &mut Vec<Segment>, places: &mut HashMap<String, Place>) {
    let number_of_this = places.len();
    places.insert(
        format_path(path),
        Place {
            segments: path.clone(),
            number: number_of_this,
            last_inside: number_of_this,
        },
    );
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                path.push(Segment::Key(key.clone()));
                number(item, path, places);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(Segment::Index(index));
                number(item, path, places);
                path.pop();
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
    let last_inside = places.len() - 1;
    if let Some(place) = places.get_mut(&format_path(path)) {
        place.last_inside = last_inside;
    }
}

/// What a value is, in the words of the configuration docs.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// serde's name for an expected type, in the words of the configuration docs.
fn plain(expected: &str) -> &str {
    match expected {
        "a sequence" => "a list",
        "a boolean" => "true or false",
        "u64" => "a whole number",
        "map" | "a map" => "a map",
        struct_name if struct_name.starts_with("struct ") => "a map",
        other => other,
    }
}

/// Whether a serde message quotes the offending value: `invalid type:
/// string "…"`, `invalid value: …`, `unknown variant `…``.
fn quotes_the_value(message: &str) -> bool {
    ["invalid type: ", "invalid value: ", "unknown variant "]
        .iter()
        .any(|start| message.starts_with(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: &str) -> Segment {
        Segment::Key(key.to_string())
    }

    #[test]
    fn secret_keys_follow_the_schema() {
        let oidc = |last: &str| {
            vec![
                key("listeners"),
                Segment::Index(0),
                key("rules"),
                Segment::Index(3),
                key("actions"),
                Segment::Index(0),
                key("authenticate_oidc"),
                key(last),
            ]
        };
        assert!(is_secret_key(&oidc("client_secret")));
        assert!(names_secret_file(&oidc("client_secret_file")));
        assert!(!is_secret_key(&oidc("client_secret_file")));
        assert!(!is_secret_key(&oidc("client_id")));
        assert!(is_secret_key(&[
            key("sessions"),
            key("secrets"),
            Segment::Index(1)
        ]));
        assert!(is_secret_key(&[key("sessions"), key("redis"), key("url")]));
        assert!(!is_secret_key(&[key("sessions"), key("store")]));
        assert!(!is_secret_key(&[key("secrets")]));
    }

    #[test]
    fn places_follow_the_file() {
        let value: Value =
            serde_json::from_str(r#"{"b": {"y": 1, "x": [2, 3]}, "a": 4}"#).expect("valid JSON");
        let document = Document::new(&value, Vec::new());
        let order: Vec<(usize, bool)> = ["b", "b.y", "b.x", "b.x[1]", "b.z", "a", "nowhere"]
            .iter()
            .map(|path| document.order(path))
            .collect();
        let expected = [
            (1, false),
            (2, false),
            (3, false),
            (5, false),
            (5, true),
            (6, false),
            (6, true),
        ];
        assert_eq!(order, expected);
    }
}
