//! Who a request is, once a credential proved it: a [`Principal`]. Every
//! credential produces one (today the session; bearer tokens later), the
//! identity headers are built from it in one place
//! ([`Authenticator`](super::Authenticator)'s `identity`), and the
//! authorization step decides on it.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::state::Session;

/// A verified identity.
pub struct Principal {
    /// The IdP that vouched for it (`iss`) and the client it logged in to.
    pub issuer: String,
    pub client: String,
    /// The user at that IdP (`sub`).
    pub subject: String,
    /// The IdP's session id, when it gave one.
    pub sid: Option<String>,
    /// The claims, a JSON object as the IdP sent it (userinfo for sessions).
    pub claims: Box<RawValue>,
    /// More claims, consulted after `claims` (the ID token's, for sessions).
    pub more_claims: Option<Box<RawValue>>,
    /// The access token, passed upstream as `x-amzn-oidc-accesstoken`.
    pub access_token: String,
    /// Unix seconds until which this identity may be used: the end of the
    /// access token or of the session, whichever is first.
    pub expires_at: u64,
}

impl Principal {
    pub fn of_session(session: &Session) -> Self {
        Self {
            issuer: session.iss.clone(),
            client: session.client.clone(),
            subject: session.sub.clone(),
            sid: session.sid.clone(),
            claims: session.claims.clone(),
            more_claims: session.id_claims.clone(),
            access_token: session.access_token.clone(),
            expires_at: session.access_expires_at.min(session.expires_at),
        }
    }

    /// The claims as JSON objects, in the order they are consulted. A claim
    /// set that is not an object counts as empty.
    pub fn claim_sets(&self) -> Vec<Map<String, Value>> {
        std::iter::once(&self.claims)
            .chain(self.more_claims.as_ref())
            .map(|raw| serde_json::from_str(raw.get()).unwrap_or_default())
            .collect()
    }

    /// The principal of a verified bearer token, used in place of a
    /// session (`bearer: accept`); `None` without a string `sub`.
    pub fn of_token(token: &str, claims: &Map<String, Value>, client: &str) -> Option<Self> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let subject = text("sub").filter(|sub| !sub.is_empty())?;
        Some(Self {
            issuer: text("iss")?,
            client: client.to_owned(),
            subject,
            sid: text("sid"),
            claims: serde_json::value::to_raw_value(claims).ok()?,
            more_claims: None,
            access_token: token.to_owned(),
            expires_at: claims.get("exp").and_then(Value::as_u64)?,
        })
    }

    /// Roughly the bytes it holds, for cache budgets.
    pub fn size(&self) -> usize {
        self.issuer.len()
            + self.client.len()
            + self.subject.len()
            + self.sid.as_ref().map_or(0, String::len)
            + self.claims.get().len()
            + self
                .more_claims
                .as_ref()
                .map_or(0, |claims| claims.get().len())
            + self.access_token.len()
    }
}
