//! What the sealed cookies hold: the session (`<session_cookie_name>-N`) and
//! the logins in progress (`AWSALBAuthNonce`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The cookie that carries the logins in progress, as ALB names it.
pub const NONCE_COOKIE: &str = "AWSALBAuthNonce";

/// At most this many logins may be in progress in one browser (tabs); the
/// oldest is dropped to make room.
pub const MAX_PENDING_LOGINS: usize = 6;

/// Longest original URL remembered for the redirect after login; a longer
/// one is replaced by `/`. Only a first bound: escaping can double a URL in
/// the cookie's JSON, so whether a login fits is decided when the cookie is
/// sealed, and a URL that does not becomes `/` there too.
pub const MAX_ORIGINAL_URL: usize = 2048;

/// A logged-in session, sealed into the session cookie shards. `Debug`
/// shows who and until when, never a token.
#[derive(Serialize, Deserialize)]
pub struct Session {
    /// The IdP and client the session was made for; a rule with another pair does not honour it.
    pub iss: String,
    pub client: String,
    pub sub: String,
    /// The IdP's session id (the ID token's `sid`), by which back-channel
    /// logout names the sessions to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Kept only when the IdP has an end-session endpoint (for `id_token_hint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Unix seconds when the access token expires.
    pub access_expires_at: u64,
    /// Unix seconds when the session ends (`session_timeout` after login); refresh never extends it.
    pub expires_at: u64,
    /// The userinfo claims, verbatim.
    pub claims: Box<RawValue>,
    /// The ID token's claims that userinfo does not repeat, protocol claims
    /// left out (Cognito puts `cognito:groups` there only): what
    /// `require` and `claim_headers` read after userinfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_claims: Option<Box<RawValue>>,
}

/// One login in progress: the secrets that bind the IdP's answer to this
/// browser. `Debug` leaves the secrets out.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    /// Path and query to return to, already checked to stay on this host.
    pub url: String,
    /// The rule whose authenticate action started the login.
    pub rule: String,
    /// The issuer and client the login was started for: only an
    /// authenticate action for the same pair may finish it, whatever the
    /// rule's name (two listeners may both have a `rule-1`).
    pub iss: String,
    pub client: String,
    /// Unix seconds after which the callback is refused (`login_timeout`).
    pub expires_at: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("iss", &self.iss)
            .field("client", &self.client)
            .field("sub", &self.sub)
            .field("access_expires_at", &self.access_expires_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("url", &self.url)
            .field("rule", &self.rule)
            .field("iss", &self.iss)
            .field("client", &self.client)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PendingLogins(pub Vec<PendingLogin>);

impl PendingLogins {
    /// Keeps the unexpired logins and the newest ones up to the limit.
    pub fn add(&mut self, login: PendingLogin, now: u64) {
        self.0.retain(|pending| pending.expires_at > now);
        if self.0.len() >= MAX_PENDING_LOGINS {
            self.0.remove(0);
        }
        self.0.push(login);
    }

    /// Takes out the unexpired login with this state.
    pub fn take(&mut self, state: &str, now: u64) -> Option<PendingLogin> {
        let index = self
            .0
            .iter()
            .position(|pending| pending.state == state && pending.expires_at > now)?;
        Some(self.0.remove(index))
    }
}

/// The path-and-query to return to after login, or `/` when it could leave
/// the host: `//evil`, `/\evil` and their percent-encoded forms are
/// scheme-relative URLs to a browser.
pub fn same_host_target(path_and_query: &str) -> &str {
    let path = path_and_query.split('?').next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let unsafe_prefix = |text: &str| {
        let mut chars = text.chars();
        chars.next() != Some('/') || matches!(chars.next(), Some('/' | '\\'))
    };
    let has_control = |text: &str| text.chars().any(|c| c.is_control());
    if unsafe_prefix(path_and_query)
        || unsafe_prefix(&decoded)
        || has_control(&decoded)
        || path_and_query.len() > MAX_ORIGINAL_URL
    {
        "/"
    } else {
        path_and_query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_host_paths_survive() {
        for good in ["/", "/app?x=1", "/a/b/c?next=//evil", "/%41pp"] {
            assert_eq!(same_host_target(good), good, "{good}");
        }
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "https://evil.example/",
            "evil",
            "",
            "/%0d%0aSet-Cookie:x=y",
        ] {
            assert_eq!(same_host_target(bad), "/", "{bad}");
        }
        let long = format!("/{}", "a".repeat(MAX_ORIGINAL_URL));
        assert_eq!(same_host_target(&long), "/");
    }

    fn login(state: &str, expires_at: u64) -> PendingLogin {
        PendingLogin {
            state: state.into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
            url: "/".into(),
            rule: "r".into(),
            iss: "https://idp.example".into(),
            client: "c".into(),
            expires_at,
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let mut pending = login("STATE-secret", 100);
        pending.nonce = "NONCE-secret".into();
        pending.code_verifier = "VERIFIER-secret".into();
        let session: Session = serde_json::from_value(serde_json::json!({
            "iss": "https://idp.example", "client": "c", "sub": "alice",
            "access_token": "ACCESS-secret", "refresh_token": "REFRESH-secret",
            "id_token": "ID-secret", "access_expires_at": 1, "expires_at": 2, "claims": {}
        }))
        .unwrap();
        let shown = format!(
            "{pending:?} {:?} {session:?}",
            PendingLogins(vec![pending.clone()])
        );
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("https://idp.example"),
            "{shown}"
        );
    }

    #[test]
    fn a_login_recorded_without_its_issuer_and_client_does_not_open() {
        let recorded = serde_json::to_value(PendingLogins(vec![login("s", 100)])).unwrap();
        for field in ["iss", "client"] {
            let mut older = recorded.clone();
            older[0].as_object_mut().unwrap().remove(field);
            assert!(
                serde_json::from_value::<PendingLogins>(older).is_err(),
                "without {field}, no action could be shown to have started it"
            );
        }
    }

    #[test]
    fn several_tabs_keep_their_own_login() {
        let mut logins = PendingLogins::default();
        logins.add(login("tab1", 100), 10);
        logins.add(login("tab2", 100), 10);
        assert_eq!(logins.take("tab1", 20).unwrap().state, "tab1");
        assert_eq!(logins.take("tab2", 20).unwrap().state, "tab2");
        assert!(logins.take("tab1", 20).is_none(), "a state is used once");
    }

    #[test]
    fn expired_and_excess_logins_are_dropped() {
        let mut logins = PendingLogins::default();
        logins.add(login("old", 15), 10);
        assert!(logins.take("old", 15).is_none(), "expired at 15");
        for index in 0..MAX_PENDING_LOGINS + 2 {
            logins.add(login(&format!("s{index}"), 100), 10);
        }
        assert_eq!(logins.0.len(), MAX_PENDING_LOGINS);
        assert!(logins.take("s0", 20).is_none());
        assert!(
            logins
                .take(&format!("s{}", MAX_PENDING_LOGINS + 1), 20)
                .is_some()
        );
    }
}
