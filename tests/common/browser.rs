//! A tiny non-JS browser for end-to-end tests: a cookie jar, navigations with
//! browser-like headers, redirects, HTML form submission and an OpenID login
//! through node-oidc-provider's interaction pages.
//!
//! Every host name resolves to 127.0.0.1 (as `curl --resolve '*:PORT:127.0.0.1'`
//! would), so `https://app1.test:PORT/` and `https://localhost:PORT/` both
//! reach a server bound on the loopback, with the URL's host as SNI and Host.
//! One connection per request (no pooling). HTTP/1.1 unless built with
//! [`Browser::new_h2`], which offers `h2` first in ALPN.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use url::Url;

/// How long one request (connect, TLS, answer and body) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed at most by [`Browser::follow`].
const MAX_HOPS: usize = 20;

/// One answer, or the end of a chain of redirects.
#[derive(Debug, Clone)]
pub struct Page {
    /// The URL that gave this answer.
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// Every answer of the chain, in order, the last one included:
    /// `(url, status)`. A plain `get`/`request` has exactly one hop.
    pub hops: Vec<(String, u16)>,
    /// Every `Set-Cookie` header value received along the chain, in order.
    pub set_cookies: Vec<String>,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    }

    /// The `Location` header resolved against the page URL.
    pub fn location(&self) -> Option<String> {
        let location = self.header("location")?;
        Some(resolve(&self.url, &location))
    }

    /// A query parameter of this page's URL.
    pub fn query(&self, name: &str) -> Option<String> {
        query_param(&self.url, name)
    }

    /// The body parsed as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!(
                "{} {} is not JSON ({error}): {}",
                self.status, self.url, self.body
            )
        })
    }

    /// The first `<a href>` whose href contains `needle`, resolved against
    /// the page URL.
    pub fn link_containing(&self, needle: &str) -> Option<String> {
        let lower = self.body.to_ascii_lowercase();
        let mut from = 0;
        while let Some(start) = lower[from..].find("<a ").map(|i| i + from) {
            let end = lower[start..].find('>').map(|i| i + start)?;
            let attrs = parse_attributes(&self.body[start + 2..end]);
            if let Some(href) = attrs.get("href")
                && href.contains(needle)
            {
                return Some(resolve(&self.url, href));
            }
            from = end;
        }
        None
    }

    /// The first `<form>` of the page.
    pub fn form(&self) -> Option<Form> {
        parse_first_form(&self.body)
    }
}

/// A parsed `<form>`: its attributes and its `<input>` fields.
#[derive(Debug, Clone)]
pub struct Form {
    /// The raw `action` attribute (empty when absent: the page itself).
    pub action: String,
    /// Lower-case method, `get` or `post`.
    pub method: String,
    /// `(name, value, type)` of every named `<input>`, in document order.
    pub inputs: Vec<(String, String, String)>,
}

impl Form {
    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|(n, _, _)| n == name)
    }
}

#[derive(Debug, Clone)]
struct Cookie {
    value: String,
    path: String,
    /// Set with a `Domain` attribute: also sent to subdomains.
    domain_match: bool,
}

pub struct Browser {
    tls: Arc<rustls::ClientConfig>,
    h2: bool,
    /// host → (name, path) → cookie.
    jar: BTreeMap<String, BTreeMap<(String, String), Cookie>>,
    stop_before: Option<String>,
    /// Extra headers sent on every request.
    pub default_headers: Vec<(String, String)>,
}

impl Browser {
    /// A browser speaking HTTP/1.1 that trusts `extra_root` (a test CA) for
    /// HTTPS, plus nothing else.
    pub fn new(extra_root: Option<CertificateDer<'static>>) -> Self {
        Self::build(extra_root, false)
    }

    /// Like [`Browser::new`], but offers HTTP/2 in ALPN (as real browsers do).
    pub fn new_h2(extra_root: Option<CertificateDer<'static>>) -> Self {
        Self::build(extra_root, true)
    }

    fn build(extra_root: Option<CertificateDer<'static>>, h2: bool) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        if let Some(root) = extra_root {
            roots
                .add(root)
                .expect("the extra root is a valid certificate");
        }
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = if h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Self {
            tls: Arc::new(tls),
            h2,
            jar: BTreeMap::new(),
            stop_before: None,
            default_headers: Vec::new(),
        }
    }

    /// While set, [`Browser::follow`] (and so `submit_form` and `login`)
    /// does not fetch a redirect target starting with `prefix`: it returns
    /// the redirect itself (its `location()` is the URL not fetched). Use it
    /// to capture an authorization response before it reaches the proxy.
    pub fn stop_before(&mut self, prefix: Option<&str>) {
        self.stop_before = prefix.map(str::to_string);
    }

    // ------------------------------------------------------------ jar ---

    /// The value of cookie `name` for `host` (any path; the longest path wins).
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        let mut best: Option<(&String, &Cookie)> = None;
        for (key, cookie) in self.cookies_for_host(host) {
            if key.0 == name && best.is_none_or(|(path, _)| key.1.len() > path.len()) {
                best = Some((&key.1, cookie));
            }
        }
        best.map(|(_, cookie)| cookie.value.clone())
    }

    /// Every cookie `(name, value)` that a request to `host` at `/` could get,
    /// whatever its path.
    pub fn cookies(&self, host: &str) -> Vec<(String, String)> {
        self.cookies_for_host(host)
            .map(|(key, cookie)| (key.0.clone(), cookie.value.clone()))
            .collect()
    }

    /// [`cookies`](Self::cookies) as a `Cookie` header value, for clients
    /// other than this browser.
    pub fn cookie_header_for(&self, host: &str) -> String {
        self.cookies(host)
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sets a host-only cookie with `Path=/`.
    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str) {
        self.jar
            .entry(host.to_ascii_lowercase())
            .or_default()
            .insert(
                (name.to_string(), "/".to_string()),
                Cookie {
                    value: value.to_string(),
                    path: "/".to_string(),
                    domain_match: false,
                },
            );
    }

    /// Removes cookie `name` of `host` on every path.
    pub fn remove_cookie(&mut self, host: &str, name: &str) {
        if let Some(cookies) = self.jar.get_mut(&host.to_ascii_lowercase()) {
            cookies.retain(|key, _| key.0 != name);
        }
    }

    pub fn clear_cookies(&mut self) {
        self.jar.clear();
    }

    fn cookies_for_host<'a>(
        &'a self,
        host: &str,
    ) -> impl Iterator<Item = (&'a (String, String), &'a Cookie)> + 'a {
        let host = host.to_ascii_lowercase();
        self.jar.iter().flat_map(move |(domain, cookies)| {
            let exact = *domain == host;
            let sub = host.ends_with(&format!(".{domain}"));
            cookies
                .iter()
                .filter(move |(_, cookie)| exact || (sub && cookie.domain_match))
        })
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let host = url.host_str()?;
        let path = url.path();
        let mut matching: Vec<(&(String, String), &Cookie)> = self
            .cookies_for_host(host)
            .filter(|(_, cookie)| path_matches(&cookie.path, path))
            .collect();
        // Longer paths first, as browsers do.
        matching.sort_by_key(|(_, cookie)| std::cmp::Reverse(cookie.path.len()));
        if matching.is_empty() {
            return None;
        }
        Some(
            matching
                .iter()
                .map(|(key, cookie)| format!("{}={}", key.0, cookie.value))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn store_set_cookie(&mut self, url: &Url, header: &str) {
        let Some(host) = url.host_str() else { return };
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
            return;
        };
        let name = name.trim().to_string();
        let value = value.trim().trim_matches('"').to_string();
        let mut path = default_path(url.path());
        let mut domain = host.to_ascii_lowercase();
        let mut domain_match = false;
        let mut delete = false;
        for attribute in parts {
            let (key, val) = attribute
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .unwrap_or((attribute.trim(), ""));
            match key.to_ascii_lowercase().as_str() {
                "path" if val.starts_with('/') => path = val.to_string(),
                "domain" if !val.is_empty() => {
                    domain = val.trim_start_matches('.').to_ascii_lowercase();
                    domain_match = true;
                }
                "max-age" if val.parse::<i64>().is_ok_and(|age| age <= 0) => delete = true,
                // No date parser here: a year before 2000 (the usual
                // `Thu, 01 Jan 1970 00:00:00 GMT`) means deletion.
                "expires"
                    if val
                        .split(|c: char| !c.is_ascii_digit())
                        .filter(|part| part.len() == 4)
                        .any(|year| year.parse::<u32>().is_ok_and(|y| y < 2000)) =>
                {
                    delete = true
                }
                _ => {}
            }
        }
        let cookies = self.jar.entry(domain).or_default();
        if delete {
            cookies.remove(&(name, path));
        } else {
            cookies.insert(
                (name, path.clone()),
                Cookie {
                    value,
                    path,
                    domain_match,
                },
            );
        }
    }

    // ------------------------------------------------------- requests ---

    /// Sends one request as given, plus `Host`, the jar's cookies (merged
    /// into a `Cookie` header given here) and [`Browser::default_headers`].
    /// Stores the answer's cookies; does not follow redirects.
    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Page {
        let parsed = Url::parse(url).unwrap_or_else(|error| panic!("bad URL {url}: {error}"));
        let method = Method::from_bytes(method.as_bytes()).expect("a valid method");

        let mut builder = Request::builder()
            .method(method.clone())
            .uri(request_target(&parsed, self.h2));
        let mut given_cookie: Option<String> = None;
        let mut names: Vec<String> = Vec::new();
        let explicit = headers.iter().map(|(n, v)| (n.to_string(), v.to_string()));
        let defaults = self
            .default_headers
            .iter()
            .filter(|(n, _)| {
                !headers
                    .iter()
                    .any(|(given, _)| given.eq_ignore_ascii_case(n))
            })
            .cloned();
        for (name, value) in explicit.chain(defaults) {
            let lower = name.to_ascii_lowercase();
            if lower == "cookie" {
                given_cookie = Some(value);
                continue;
            }
            names.push(lower);
            builder = builder.header(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_str(&value).expect("a valid header value"),
            );
        }
        if !self.h2 && !names.iter().any(|n| n == "host") {
            builder = builder.header("host", host_header(&parsed));
        }
        if !names.iter().any(|n| n == "user-agent") {
            builder = builder.header("user-agent", "portcullis-test-browser/1");
        }
        let cookie = match (given_cookie, self.cookie_header(&parsed)) {
            (Some(given), Some(jar)) => Some(format!("{given}; {jar}")),
            (given, jar) => given.or(jar),
        };
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", cookie);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a valid request");

        let (status, response_headers, bytes) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.send(&parsed, request))
                .await
                .unwrap_or_else(|_| panic!("{method} {url}: no answer within {REQUEST_TIMEOUT:?}"))
                .unwrap_or_else(|error| panic!("{method} {url}: {error}"));

        let mut set_cookies = Vec::new();
        for value in response_headers.get_all("set-cookie") {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            self.store_set_cookie(&parsed, &value);
            set_cookies.push(value);
        }
        Page {
            url: url.to_string(),
            status,
            headers: response_headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            hops: vec![(url.to_string(), status)],
            set_cookies,
        }
    }

    async fn send(
        &self,
        url: &Url,
        request: Request<Full<Bytes>>,
    ) -> Result<(u16, HeaderMap, Bytes), String> {
        let host = url.host_str().ok_or("URL without host")?;
        let port = url.port_or_known_default().ok_or("URL without port")?;
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let tcp = TcpStream::connect(SocketAddr::new(ip, port))
            .await
            .map_err(|error| format!("connect to {ip}:{port}: {error}"))?;
        let _ = tcp.set_nodelay(true);
        match url.scheme() {
            "http" => exchange(TokioIo::new(tcp), request, false).await,
            "https" => {
                let name =
                    ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string())
                        .map_err(|error| format!("server name {host}: {error}"))?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|error| format!("TLS handshake with {host}:{port}: {error}"))?;
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                exchange(TokioIo::new(tls), request, h2).await
            }
            other => Err(format!("unsupported scheme {other}")),
        }
    }

    /// A top-level navigation: `GET` with `Accept: text/html` and
    /// `Sec-Fetch-Mode: navigate`; redirects are not followed.
    pub async fn get(&mut self, url: &str) -> Page {
        self.request("GET", url, NAVIGATION, None).await
    }

    /// Navigates to `url` and follows redirects (at most 20).
    pub async fn follow(&mut self, url: &str) -> Page {
        self.navigate("GET", url, None, Vec::new(), Vec::new())
            .await
    }

    async fn navigate(
        &mut self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
        mut hops: Vec<(String, u16)>,
        mut set_cookies: Vec<String>,
    ) -> Page {
        let mut method = method.to_string();
        let mut url = url.to_string();
        let mut body = body;
        loop {
            let mut headers: Vec<(&str, &str)> = NAVIGATION.to_vec();
            if body.is_some() {
                headers.push(("content-type", "application/x-www-form-urlencoded"));
            }
            let mut page = self.request(&method, &url, &headers, body.clone()).await;
            hops.push((url.clone(), page.status));
            set_cookies.append(&mut page.set_cookies);
            let next = match page.status {
                301 | 302 | 303 | 307 | 308 => page.location(),
                _ => None,
            };
            let stop = match (&next, &self.stop_before) {
                (Some(next), Some(prefix)) => next.starts_with(prefix.as_str()),
                _ => false,
            };
            let Some(next) = next.filter(|_| !stop) else {
                page.hops = hops;
                page.set_cookies = set_cookies;
                return page;
            };
            if hops.len() > MAX_HOPS {
                panic!("more than {MAX_HOPS} redirects: {hops:#?}");
            }
            if !matches!(page.status, 307 | 308) {
                method = "GET".to_string();
                body = None;
            }
            url = next;
        }
    }

    /// Submits the first `<form>` of `page`: its named inputs (hidden ones
    /// and any with a value) overridden/extended by `fields`, urlencoded, to
    /// its action resolved against the page URL; then follows redirects.
    pub async fn submit_form(&mut self, page: &Page, fields: &[(&str, &str)]) -> Page {
        let form = page.form().unwrap_or_else(|| {
            panic!("no <form> in {} ({}): {}", page.url, page.status, page.body)
        });
        let mut values: Vec<(String, String)> = form
            .inputs
            .iter()
            .filter(|(name, _, kind)| {
                !matches!(
                    kind.as_str(),
                    "submit" | "button" | "checkbox" | "radio" | "image"
                ) && !fields.iter().any(|(field, _)| field == name)
            })
            .map(|(name, value, _)| (name.clone(), value.clone()))
            .collect();
        values.extend(fields.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(values.iter())
            .finish();
        let mut action = resolve(&page.url, &form.action);
        if form.method == "get" {
            let mut target = Url::parse(&action).expect("a valid form action");
            target.set_query(Some(&encoded));
            action = target.to_string();
            self.navigate("GET", &action, None, Vec::new(), Vec::new())
                .await
        } else {
            self.navigate(
                "POST",
                &action,
                Some(encoded.into_bytes()),
                Vec::new(),
                Vec::new(),
            )
            .await
        }
    }

    /// Navigates to `start_url` (a protected page, or an authorization
    /// request), signs in at node-oidc-provider's login page with
    /// `user`/`password`, accepts the consent page if one is shown, and
    /// returns the final page after all redirects. `hops` covers the whole
    /// journey. Panics when a login or consent page shows up more than 3 times.
    pub async fn login(&mut self, start_url: &str, user: &str, password: &str) -> Page {
        let mut page = self.follow(start_url).await;
        let mut hops = page.hops.clone();
        let mut set_cookies = page.set_cookies.clone();
        for _ in 0..6 {
            let Some(form) = page.form() else { break };
            let fields: Vec<(&str, &str)> = if form.has_input("login") && form.has_input("password")
            {
                vec![("login", user), ("password", password)]
            } else if form
                .inputs
                .iter()
                .any(|(name, value, _)| name == "prompt" && value == "consent")
            {
                vec![]
            } else {
                break;
            };
            page = self.submit_form(&page, &fields).await;
            hops.extend(page.hops.iter().cloned());
            set_cookies.extend(page.set_cookies.iter().cloned());
        }
        if page
            .form()
            .is_some_and(|form| form.has_input("login") || form.has_input("prompt"))
        {
            panic!("login did not finish: {hops:#?}\n{}", page.body);
        }
        page.hops = hops;
        page.set_cookies = set_cookies;
        page
    }

    /// Navigates to `start_url`, and at the provider's login page follows its
    /// `[ Cancel ]` link (`/interaction/{uid}/abort`): the provider then
    /// redirects to the redirect_uri with `error=access_denied`. Returns the
    /// final page.
    pub async fn abort_login(&mut self, start_url: &str) -> Page {
        let page = self.follow(start_url).await;
        let abort = page.link_containing("/abort").unwrap_or_else(|| {
            panic!(
                "no abort link at {} ({}): {}",
                page.url, page.status, page.body
            )
        });
        let mut hops = page.hops.clone();
        let mut end = self.follow(&abort).await;
        hops.extend(end.hops.iter().cloned());
        end.hops = hops;
        end
    }
}

const NAVIGATION: &[(&str, &str)] = &[
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
];

async fn exchange<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
    h2: bool,
) -> Result<(u16, HeaderMap, Bytes), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|error| format!("HTTP/2 handshake: {error}"))?;
        tokio::spawn(connection);
        sender.send_request(request).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| format!("HTTP/1.1 handshake: {error}"))?;
        tokio::spawn(connection);
        sender.send_request(request).await
    }
    .map_err(|error| format!("request: {error}"))?;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|error| format!("reading the body: {error}"))?
        .to_bytes();
    Ok((status, parts.headers, bytes))
}

/// HTTP/1.1 sends origin-form (`/path?query`); HTTP/2 needs the full URI for
/// `:scheme` and `:authority`.
fn request_target(url: &Url, h2: bool) -> String {
    if h2 && url.scheme() == "https" {
        let mut full = url.clone();
        full.set_fragment(None);
        return full.to_string();
    }
    let mut target = url.path().to_string();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    target
}

fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Resolves `reference` (absolute, or relative such as `/path` or `?q`)
/// against `base`.
pub fn resolve(base: &str, reference: &str) -> String {
    match Url::parse(base).and_then(|base| base.join(reference)) {
        Ok(url) => url.to_string(),
        Err(_) => reference.to_string(),
    }
}

/// A query parameter of `url`, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn default_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(index) => request_path[..index].to_string(),
    }
}

fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/')))
}

fn parse_first_form(html: &str) -> Option<Form> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<form")?;
    let tag_end = lower[start..].find('>')? + start;
    let attrs = parse_attributes(&html[start + 5..tag_end]);
    let end = lower[tag_end..]
        .find("</form")
        .map(|i| i + tag_end)
        .unwrap_or(html.len());
    let inner = &html[tag_end..end];
    let inner_lower = &lower[tag_end..end];
    let mut inputs = Vec::new();
    let mut from = 0;
    while let Some(at) = inner_lower[from..].find("<input").map(|i| i + from) {
        let close = inner_lower[at..]
            .find('>')
            .map(|i| i + at)
            .unwrap_or(inner.len());
        let input = parse_attributes(&inner[at + 6..close]);
        if let Some(name) = input.get("name") {
            inputs.push((
                name.clone(),
                input.get("value").cloned().unwrap_or_default(),
                input
                    .get("type")
                    .map(|t| t.to_ascii_lowercase())
                    .unwrap_or_else(|| "text".to_string()),
            ));
        }
        from = close;
    }
    Some(Form {
        action: attrs.get("action").cloned().unwrap_or_default(),
        method: attrs
            .get("method")
            .map(|m| m.to_ascii_lowercase())
            .unwrap_or_else(|| "get".to_string()),
        inputs,
    })
}

/// Parses `name="value" name='value' name=value name` attributes (names
/// lower-cased, values HTML-unescaped).
fn parse_attributes(text: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let name_start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        let name: String = chars[name_start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let quote = chars[i];
                i += 1;
                let value_start = i;
                while i < chars.len() && chars[i] != quote {
                    i += 1;
                }
                value = chars[value_start..i].iter().collect();
                i += 1;
            } else {
                let value_start = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[value_start..i].iter().collect();
            }
        }
        if !name.is_empty() {
            attrs.entry(name).or_insert_with(|| html_unescape(&value));
        }
    }
    attrs
}

fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(semi) = rest.find(';').filter(|&semi| semi <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if entity.starts_with("#x") || entity.starts_with("#X") => {
                u32::from_str_radix(&entity[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if entity.starts_with('#') => entity[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
