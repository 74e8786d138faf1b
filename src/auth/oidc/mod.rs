//! `authenticate_oidc`: the relying party.

pub mod http;
pub mod jws;
pub mod logout;
pub mod provider;
pub mod tokens;

/// The parameters the proxy itself puts on every authorization request; an
/// `authentication_request_extra_params` entry may not reuse one.
pub const AUTHORIZATION_PARAMS: [&str; 8] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];
