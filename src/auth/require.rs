//! Claims requirements (`require`), in ALB's `AdditionalClaims` shape: every
//! entry must hold for a principal to pass, else 403.
//!
//! - `single-string`: the claim equals one of `values`;
//! - `string-array`: the claim is an array that contains every one of `values`;
//! - `space-separated-values`: the claim is a string whose space-separated
//!   words include every one of `values` (OAuth's `scope`).
//!
//! A JSON boolean or number compares by its text (`true`, `42`). A name is
//! looked up as given first; when there is no claim of that name and it
//! has dots, it is read as a path into nested objects (`realm_access.roles`,
//! as Keycloak nests roles), so a claim named `https://example.com/roles`
//! is still found whole.

use serde_json::{Map, Value};

use crate::config::{ClaimFormat, ClaimRequirement};

/// Why a principal does not pass: the first requirement that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the claim `{claim}` does not hold what the rule requires")]
pub struct Mismatch {
    /// The requirement's claim name, from the configuration (never a claim's value).
    pub claim: String,
}

/// Whether `claims` satisfy every requirement. `sources` are searched in
/// order for each claim: the first that has it decides.
pub fn check(
    requirements: &[ClaimRequirement],
    sources: &[&Map<String, Value>],
) -> Result<(), Mismatch> {
    for requirement in requirements {
        let claim = sources
            .iter()
            .find_map(|claims| lookup(claims, &requirement.name));
        if !claim.is_some_and(|claim| holds(requirement, claim)) {
            return Err(Mismatch {
                claim: requirement.name.clone(),
            });
        }
    }
    Ok(())
}

/// The claim `name`: as given, else as a dotted path into nested objects.
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(claim) = claims.get(name) {
        return Some(claim);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A scalar claim as text: strings as they are, booleans and numbers as
/// JSON writes them; arrays, objects and null have none.
pub fn scalar_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(text) => Some(std::borrow::Cow::Borrowed(text)),
        Value::Bool(_) | Value::Number(_) => Some(std::borrow::Cow::Owned(value.to_string())),
        _ => None,
    }
}

fn holds(requirement: &ClaimRequirement, claim: &Value) -> bool {
    match requirement.format {
        ClaimFormat::SingleString => scalar_text(claim)
            .is_some_and(|text| requirement.values.iter().any(|value| *value == *text)),
        ClaimFormat::StringArray => {
            let Some(items) = claim.as_array() else {
                return false;
            };
            requirement.values.iter().all(|value| {
                items
                    .iter()
                    .any(|item| scalar_text(item).is_some_and(|text| *text == **value))
            })
        }
        ClaimFormat::SpaceSeparated => {
            let Some(text) = claim.as_str() else {
                return false;
            };
            requirement
                .values
                .iter()
                .all(|value| text.split(' ').any(|word| word == value))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn requirement(name: &str, format: ClaimFormat, values: &[&str]) -> ClaimRequirement {
        ClaimRequirement {
            name: name.into(),
            format,
            values: values.iter().map(|value| (*value).to_owned()).collect(),
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn each_format_holds_as_alb_defines_it() {
        use ClaimFormat::*;
        let alice = claims(json!({
            "email_verified": true,
            "hd": "example.com",
            "age": 42,
            "groups": ["admins", "users", 7],
            "scope": "openid orders:read  orders:write",
            "realm_access": { "roles": ["ops"] },
            "https://example.com/roles": ["editor"],
        }));
        let cases = [
            (
                requirement("hd", SingleString, &["example.org", "example.com"]),
                true,
            ),
            (requirement("hd", SingleString, &["EXAMPLE.COM"]), false),
            (requirement("email_verified", SingleString, &["true"]), true),
            (requirement("age", SingleString, &["42"]), true),
            (requirement("groups", SingleString, &["admins"]), false),
            (
                requirement("groups", StringArray, &["admins", "users"]),
                true,
            ),
            (
                requirement("groups", StringArray, &["admins", "owners"]),
                false,
            ),
            (requirement("groups", StringArray, &["7"]), true),
            (requirement("hd", StringArray, &["example.com"]), false),
            (
                requirement("scope", SpaceSeparated, &["orders:read", "orders:write"]),
                true,
            ),
            (requirement("scope", SpaceSeparated, &["orders"]), false),
            (requirement("groups", SpaceSeparated, &["admins"]), false),
            (
                requirement("realm_access.roles", StringArray, &["ops"]),
                true,
            ),
            (
                requirement("realm_access.roles.x", StringArray, &["ops"]),
                false,
            ),
            (
                requirement("https://example.com/roles", StringArray, &["editor"]),
                true,
            ),
            (requirement("missing", SingleString, &["x"]), false),
        ];
        for (requirement, expected) in cases {
            let outcome = check(std::slice::from_ref(&requirement), &[&alice]);
            assert_eq!(
                outcome.is_ok(),
                expected,
                "{} {:?}",
                requirement.name,
                requirement.values
            );
        }
    }

    #[test]
    fn every_requirement_must_hold_and_the_first_source_with_the_claim_decides() {
        use ClaimFormat::*;
        let userinfo = claims(json!({ "groups": ["users"] }));
        let id_token = claims(json!({ "groups": ["admins"], "hd": "example.com" }));
        let admins = requirement("groups", StringArray, &["admins"]);
        let domain = requirement("hd", SingleString, &["example.com"]);
        assert_eq!(
            check(&[domain.clone(), admins.clone()], &[&userinfo, &id_token]),
            Err(Mismatch {
                claim: "groups".into()
            }),
            "userinfo's groups decide"
        );
        assert!(check(&[domain, admins], &[&id_token, &userinfo]).is_ok());
        assert!(check(&[], &[]).is_ok(), "no requirement: everyone passes");
    }
}
