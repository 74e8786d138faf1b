//! Unknown keys: turning the paths `serde_ignored` reports into problems, with
//! a "did you mean" when a known key at the same place is one or two typos
//! away.
//!
//! The known keys come from the raw structs themselves (serde hands every
//! derived struct's field list to `deserialize_struct`), so the suggestions
//! cannot drift from the schema.

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::Problem;
use super::raw::{
    RawAction, RawAdmin, RawAuthCommon, RawCertificate, RawClaimRequirement, RawCognitoProvider,
    RawConditions, RawConfig, RawFixedResponse, RawForward, RawHttpHeader, RawJwtValidation,
    RawLimits, RawListener, RawOidcProvider, RawQueryString, RawRedirect, RawRedis, RawRule,
    RawSessions, RawSigning, RawStickiness, RawTls, RawWeightedTarget,
};

/// One step of a key path, as both `serde_ignored` and our own walkers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Formats segments as `listeners[0].rules[1].actions[0].forward.target`.
pub fn format_path(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// Flattens a `serde_ignored` path into segments.
pub fn segments_of(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut segments = Vec::new();
    collect(path, &mut segments);
    segments
}

fn collect(path: &serde_ignored::Path<'_>, segments: &mut Vec<Segment>) {
    match path {
        serde_ignored::Path::Root => {}
        serde_ignored::Path::Seq { parent, index } => {
            collect(parent, segments);
            segments.push(Segment::Index(*index));
        }
        serde_ignored::Path::Map { parent, key } => {
            collect(parent, segments);
            segments.push(Segment::Key(key.clone()));
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => collect(parent, segments),
    }
}

/// The problem for an unknown key at `segments` (whose last segment is the key).
pub fn unknown_key_problem(segments: &[Segment]) -> Problem {
    let (key, parent) = match segments.split_last() {
        Some((Segment::Key(key), parent)) => (key.as_str(), parent),
        Some((Segment::Index(_), _)) | None => ("", segments),
    };
    let known = known_keys(parent);
    let fix = match closest(key, &known) {
        Some(suggestion) => format!("did you mean `{suggestion}`?"),
        None if known.is_empty() => "remove it".to_string(),
        None => format!("remove it; keys allowed here: {}", known.join(", ")),
    };
    Problem {
        path: format_path(segments),
        message: format!("unknown key `{key}`"),
        fix,
    }
}

/// The keys allowed in the map at `parent` (list indices are skipped).
pub fn known_keys(parent: &[Segment]) -> Vec<&'static str> {
    let keys: Vec<&str> = parent
        .iter()
        .filter_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    match keys.as_slice() {
        [] => fields_of::<RawConfig>(),
        ["admin"] => fields_of::<RawAdmin>(),
        ["sessions"] => fields_of::<RawSessions>(),
        ["sessions", "redis"] => fields_of::<RawRedis>(),
        ["signing"] => fields_of::<RawSigning>(),
        ["limits"] => fields_of::<RawLimits>(),
        ["listeners"] => fields_of::<RawListener>(),
        ["listeners", "tls"] => fields_of::<RawTls>(),
        ["listeners", "tls", "certificates"] => fields_of::<RawCertificate>(),
        ["listeners", "rules"] => fields_of::<RawRule>(),
        ["listeners", "rules", "conditions"] => fields_of::<RawConditions>(),
        ["listeners", "rules", "conditions", "http_header"] => fields_of::<RawHttpHeader>(),
        ["listeners", "rules", "conditions", "query_string"] => fields_of::<RawQueryString>(),
        ["listeners", "rules", "actions"] => fields_of::<RawAction>(),
        ["listeners", "rules", "actions", "forward"] => fields_of::<RawForward>(),
        ["listeners", "rules", "actions", "forward", "targets"] => fields_of::<RawWeightedTarget>(),
        ["listeners", "rules", "actions", "forward", "stickiness"] => fields_of::<RawStickiness>(),
        ["listeners", "rules", "actions", "fixed_response"] => fields_of::<RawFixedResponse>(),
        ["listeners", "rules", "actions", "redirect"] => fields_of::<RawRedirect>(),
        ["listeners", "rules", "actions", "authenticate_oidc"] => {
            [fields_of::<RawOidcProvider>(), fields_of::<RawAuthCommon>()].concat()
        }
        ["listeners", "rules", "actions", "jwt_validation"] => fields_of::<RawJwtValidation>(),
        [
            "listeners",
            "rules",
            "actions",
            "authenticate_oidc" | "authenticate_cognito" | "jwt_validation",
            "require",
        ] => fields_of::<RawClaimRequirement>(),
        ["listeners", "rules", "actions", "authenticate_cognito"] => [
            fields_of::<RawCognitoProvider>(),
            fields_of::<RawAuthCommon>(),
        ]
        .concat(),
        // Anywhere else (inside extra params, or under a key that is itself
        // unknown) there is no schema to suggest from.
        _ => Vec::new(),
    }
}

/// Whether `unknown` is an obvious misspelling of `known`.
pub fn is_typo_of(unknown: &str, known: &str) -> bool {
    closest(unknown, &[known]).is_some()
}

/// The known key closest to `key`, if it is close enough to be an obvious
/// typo: at most two edits, and fewer than half the key's length.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let key = key.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|candidate| (edit_distance(&key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2 && *distance * 2 < key.len().max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The field names of a derived struct, read off what serde's derive passes
/// to `deserialize_struct`. Empty for types that do not deserialize as a
/// plain struct (e.g. ones with flattened fields).
fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    let mut fields = Vec::new();
    // The probe always fails (it never produces a value); it only records.
    let _ = T::deserialize(FieldProbe {
        fields: &mut fields,
    });
    fields
}

struct FieldProbe<'a> {
    fields: &'a mut Vec<&'static str>,
}

#[derive(Debug)]
struct ProbeDone;

impl std::fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<T: std::fmt::Display>(_message: T) -> Self {
        ProbeDone
    }
}

impl<'de> de::Deserializer<'de> for FieldProbe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        self.fields.extend_from_slice(fields);
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_the_raw_structs() {
        assert_eq!(
            fields_of::<RawForward>(),
            vec!["target", "targets", "stickiness", "timeout"]
        );
        let oidc = known_keys(&[
            Segment::Key("listeners".into()),
            Segment::Index(0),
            Segment::Key("rules".into()),
            Segment::Index(0),
            Segment::Key("actions".into()),
            Segment::Index(0),
            Segment::Key("authenticate_oidc".into()),
        ]);
        assert!(oidc.contains(&"issuer"));
        assert!(oidc.contains(&"sign_out_redirect"));
    }

    #[test]
    fn suggests_only_obvious_typos() {
        let known = ["certificate_file", "private_key_file", "reload_interval"];
        assert_eq!(closest("certificat_file", &known), Some("certificate_file"));
        assert_eq!(closest("reload-interval", &known), Some("reload_interval"));
        assert_eq!(closest("colour", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
