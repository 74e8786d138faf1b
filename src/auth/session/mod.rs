//! Sessions: the sealed cookie codec and its sharding.
//!
//! [`CookieSealer`] turns bytes into cookie values only the proxy can read
//! (the session, sharded over `{name}-0..3`, and the login-flow nonce cookie);
//! [`RequestCookies`] reads a request's cookies with bounded work; the free
//! functions write `Set-Cookie` headers and strip the proxy's own cookies
//! before a request goes upstream; [`store`] says where a session lives
//! between requests (the cookies themselves, or Redis).

mod codec;
mod cookies;
pub mod store;

pub use codec::{CookieSealer, SealedShards, mac_key};
pub use cookies::{
    MAX_REQUEST_COOKIE_BYTES, MAX_REQUEST_COOKIES, RequestCookies, clear_cookie, is_shard_name,
    is_valid_cookie_name, set_cookie, set_sharded_cookies, shard_names, strip_request_cookies,
};
