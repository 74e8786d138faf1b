//! Authentication: the `authenticate_oidc` / `authenticate_cognito` login flow
//! and the sessions it creates.

pub mod error;
pub mod oidc;
pub mod session;
pub mod state;
