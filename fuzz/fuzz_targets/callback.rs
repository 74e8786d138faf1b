//! `/oauth2/idpresponse` input handling as the proxy does it: the query read
//! with `form_urlencoded`, `error` / `state` / `code` taken from it, the
//! request's cookies read, the logins in progress opened from the nonce
//! cookie and the one for `state` taken out.
//!
//! Properties: nothing panics; a forged nonce cookie opens to no logins; a
//! sealed one (sent first) opens to exactly what was sealed; `take` returns
//! the first unexpired login with that state, and only it is removed.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use http::header::{COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::internals::{
    CookieSealer, NONCE_COOKIE, PendingLogin, PendingLogins, RequestCookies, pending_logins,
};
use portcullis::config::SessionKey;

static SEALER: LazyLock<CookieSealer> = LazyLock::new(|| CookieSealer::new(&[SessionKey([7; 32])]));

#[derive(Arbitrary, Debug)]
struct Login {
    state: String,
    nonce: String,
    code_verifier: String,
    url: String,
    rule: String,
    iss: String,
    client: String,
    expires_at: u64,
}

#[derive(Arbitrary, Debug)]
enum NonceCookie {
    /// Only what the fuzzer sends.
    Forged,
    /// The sealed logins, in the first `Cookie` header, before anything else.
    SealedFirst,
    /// The sealed logins, after the fuzzer's headers (which may shadow or
    /// push it past the bounds).
    SealedLast,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    logins: Vec<Login>,
    nonce_cookie: NonceCookie,
    /// Append `&state=` with the state of this login to the query.
    state_of: Option<u8>,
    now: u64,
    cookie_headers: Vec<&'a [u8]>,
    query: &'a str,
}

fn to_login(login: &Login) -> PendingLogin {
    PendingLogin {
        state: login.state.clone(),
        nonce: login.nonce.clone(),
        code_verifier: login.code_verifier.clone(),
        url: login.url.clone(),
        rule: login.rule.clone(),
        iss: login.iss.clone(),
        client: login.client.clone(),
        expires_at: login.expires_at,
    }
}

fn same(a: &PendingLogin, b: &PendingLogin) -> bool {
    (
        &a.state,
        &a.nonce,
        &a.code_verifier,
        &a.url,
        &a.rule,
        &a.iss,
        &a.client,
        a.expires_at,
    ) == (
        &b.state,
        &b.nonce,
        &b.code_verifier,
        &b.url,
        &b.rule,
        &b.iss,
        &b.client,
        b.expires_at,
    )
}

fn same_list(a: &[PendingLogin], b: &[PendingLogin]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
}

fuzz_target!(|input: Input<'_>| {
    let sealed_logins = PendingLogins(input.logins.iter().map(to_login).collect());
    let plaintext = serde_json::to_vec(&sealed_logins).expect("strings and numbers serialize");
    let sealed = SEALER.seal(NONCE_COOKIE, &plaintext);
    let sealed_cookie = HeaderValue::try_from(format!("{NONCE_COOKIE}={sealed}"))
        .expect("base64url is a valid header value");

    let mut headers = HeaderMap::new();
    if matches!(input.nonce_cookie, NonceCookie::SealedFirst) {
        headers.append(COOKIE, sealed_cookie.clone());
    }
    for value in &input.cookie_headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(COOKIE, value);
        }
    }
    if matches!(input.nonce_cookie, NonceCookie::SealedLast) {
        headers.append(COOKIE, sealed_cookie);
    }

    let mut query = input.query.to_owned();
    if let Some(index) = input.state_of
        && !sealed_logins.0.is_empty()
    {
        let state = &sealed_logins.0[usize::from(index) % sealed_logins.0.len()].state;
        query.push_str("&state=");
        query.extend(url::form_urlencoded::byte_serialize(state.as_bytes()));
    }

    // As the proxy reads the query.
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };

    let cookies = RequestCookies::parse(&headers);
    let mut logins = pending_logins(&SEALER, &cookies);
    let opens = sealed.len() <= 4096;
    match input.nonce_cookie {
        NonceCookie::Forged => assert!(logins.0.is_empty(), "a forged nonce cookie opened"),
        NonceCookie::SealedFirst if opens => assert!(same_list(&logins.0, &sealed_logins.0)),
        NonceCookie::SealedFirst => assert!(logins.0.is_empty()),
        // Shadowed by an earlier (forged) nonce cookie, or past the bounds.
        NonceCookie::SealedLast => {
            assert!(logins.0.is_empty() || (opens && same_list(&logins.0, &sealed_logins.0)))
        }
    }

    if param("error").is_some() {
        return;
    }
    let (Some(state), Some(_code)) = (param("state"), param("code")) else {
        return;
    };
    let before = logins.0.clone();
    let expected = before
        .iter()
        .position(|login| login.state == state && login.expires_at > input.now);
    let taken = logins.take(state, input.now);
    match (expected, taken) {
        (None, None) => assert!(same_list(&logins.0, &before)),
        (Some(index), Some(login)) => {
            assert!(same(&login, &before[index]));
            let mut rest = before;
            rest.remove(index);
            assert!(same_list(&logins.0, &rest));
        }
        (expected, taken) => panic!("expected login {expected:?}, took {taken:?}"),
    }
});
