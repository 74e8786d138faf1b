//! `authenticate_oidc`: the relying party.

pub mod http;
pub mod provider;
pub mod tokens;
