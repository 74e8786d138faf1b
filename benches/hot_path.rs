//! Criterion micro-benchmarks of the authenticated request's hot pieces:
//! opening the sealed session cookie (1 and 4 shards) and, what a session's
//! later requests do instead, finding it in the opened-session cache; the
//! identity headers' `x-amzn-oidc-data` (cache hit vs miss, i.e. an ECDSA
//! signature); and first-match rule selection over 100 rules.

use criterion::{BenchmarkId, Criterion, black_box, criterion_group, criterion_main};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use portcullis::config::{
    Conditions, FixedResponseAction, Rule, SessionKey, SigningConfig, TerminalAction, TokenEncoding,
};
use portcullis::internals::{CookieSealer, OpenedSessions, RequestCookies, SealedShards};
use portcullis::internals::{
    DataSigner, DataTokenCache, RequestFacts, normalize_host, rule_matches,
};

const COOKIE_NAME: &str = "AWSELBAuthSessionCookie";

/// A realistic session plaintext padded to about `len` bytes.
fn session_json(len: usize) -> Vec<u8> {
    let claims = r#"{"sub":"alice","email":"alice@example.test","email_verified":true,"name":"Alice Example","given_name":"Alice","family_name":"Example","preferred_username":"alice""#;
    let head = format!(
        r#"{{"iss":"http://127.0.0.1:4000","client":"portcullis","sub":"alice","access_token":"{}","access_expires_at":4102444800,"expires_at":4102444800,"claims":{claims}"#,
        "a".repeat(43)
    );
    let mut text = head;
    let mut n = 0;
    while text.len() + 20 < len {
        let chunk = (len - text.len() - 20).min(1000);
        text.push_str(&format!(r#","big_{n}":"{}""#, "x".repeat(chunk)));
        n += 1;
    }
    text.push_str("}}");
    text.into_bytes()
}

fn open_cookie(c: &mut Criterion) {
    let sealer = CookieSealer::new(&[SessionKey([7; 32])]);
    let mut group = c.benchmark_group("open_session_cookie");
    // ~1 KiB fits one shard; ~11 KiB needs four (each shard < 4096 bytes).
    for (shards_wanted, len) in [(1, 1000), (4, 11_000)] {
        let plaintext = session_json(len);
        let shards = sealer.seal_sharded(COOKIE_NAME, &plaintext).unwrap();
        assert_eq!(shards.len(), shards_wanted, "plaintext {len} bytes");
        let header = shards
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&header).unwrap());
        group.bench_with_input(
            BenchmarkId::new("shards", shards_wanted),
            &headers,
            |b, headers| {
                b.iter(|| {
                    let cookies = RequestCookies::parse(black_box(headers));
                    let plaintext = sealer.open_sharded(COOKIE_NAME, &cookies).unwrap();
                    // What load_session does next.
                    let session: portcullis::internals::Session =
                        serde_json::from_slice(&plaintext).unwrap();
                    black_box(session)
                })
            },
        );
        let opened = OpenedSessions::new(1 << 20);
        let identity: std::sync::Arc<[_; 3]> = std::sync::Arc::new(std::array::from_fn(|_| {
            (
                http::HeaderName::from_static("x-amzn-oidc-identity"),
                HeaderValue::from_static("alice"),
            )
        }));
        let cookies = RequestCookies::parse(&headers);
        opened.insert(
            &SealedShards::find(COOKIE_NAME, &cookies).unwrap(),
            identity,
            100,
            u64::MAX,
        );
        group.bench_with_input(
            BenchmarkId::new("cache_hit_shards", shards_wanted),
            &headers,
            |b, headers| {
                b.iter(|| {
                    let cookies = RequestCookies::parse(black_box(headers));
                    let shards = SealedShards::find(COOKIE_NAME, &cookies).unwrap();
                    black_box(opened.get(&shards, 0).unwrap())
                })
            },
        );
    }
    group.finish();
}

fn identity_data(c: &mut Criterion) {
    let signer = DataSigner::new(&SigningConfig {
        private_key_pem: None,
        key_id: None,
        signer: "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/portcullis/0"
            .into(),
        encoding: TokenEncoding::Alb,
    })
    .unwrap();
    let claims = br#"{"sub":"alice","email":"alice@example.test","email_verified":true,"name":"Alice Example","given_name":"Alice","family_name":"Example","preferred_username":"alice"}"#;
    let (exp, now) = (4_102_444_800, 1_700_000_000);
    let mut group = c.benchmark_group("x_amzn_oidc_data");
    let hit = DataTokenCache::new(16_384);
    // Capacity 0 disables the cache: every call signs (ECDSA P-256).
    let miss = DataTokenCache::new(0);
    for (name, cache) in [("cache_hit", &hit), ("cache_miss_sign", &miss)] {
        // Warms the hit case; the miss case signs every time anyway.
        signer
            .sign_cached(cache, "http://idp", "portcullis", claims, exp, now)
            .unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                signer
                    .sign_cached(
                        cache,
                        "http://idp",
                        "portcullis",
                        black_box(claims),
                        exp,
                        now,
                    )
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn rules(c: &mut Criterion) {
    // 100 rules with host and path conditions; the request matches the last.
    let rules: Vec<Rule> = (0..100)
        .map(|i| Rule {
            name: format!("rule-{i}"),
            conditions: Conditions {
                host: vec![
                    format!("app{i}.example.com"),
                    format!("*.svc{i}.example.com"),
                ],
                path: vec![format!("/api/v{i}/*"), format!("/static/{i}/*.js")],
                ..Conditions::default()
            },
            authenticate: None,
            jwt_validation: None,
            action: TerminalAction::FixedResponse(FixedResponseAction {
                status: 200,
                content_type: None,
                body: String::new(),
            }),
        })
        .collect();
    let headers = HeaderMap::new();
    c.bench_function("rule_match_100_rules_last_wins", |b| {
        b.iter(|| {
            let host = normalize_host(black_box("App99.example.com:8443"));
            let request = RequestFacts {
                host: &host,
                path: black_box("/api/v99/users/42"),
                method: &http::Method::GET,
                headers: &headers,
                query: None,
                peer: std::net::Ipv4Addr::LOCALHOST.into(),
            };
            rules.iter().position(|rule| rule_matches(rule, &request))
        })
    });
}

fn paths(c: &mut Criterion) {
    use portcullis::internals::{canonicalize, sanitize_request};

    // A typical 40-byte path, already canonical (borrowed), and one of the
    // same length with dot segments, escapes and `//` (resolved, owned).
    const CANONICAL: &str = "/static/app/v2/assets/main.4f3a9c1e29.js";
    const RESOLVED: &str = "/static/./app/%76%32/../v2//main.4f3a.js";
    assert_eq!((CANONICAL.len(), RESOLVED.len()), (40, 40));
    let mut group = c.benchmark_group("canonical_path");
    group.bench_function("canonical_40_bytes", |b| {
        b.iter(|| canonicalize(black_box(CANONICAL)).is_ok())
    });
    group.bench_function("resolved_40_bytes", |b| {
        b.iter(|| canonicalize(black_box(RESOLVED)).is_ok())
    });
    group.finish();

    // Header hygiene on a browser's usual request headers.
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "app.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("cookie", "AWSELBAuthSessionCookie-0=abc; theme=dark"),
        ("sec-fetch-mode", "navigate"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let policy = portcullis::config::HeaderPolicy::default();
    c.bench_function("sanitize_request_8_headers", |b| {
        b.iter_batched_ref(
            || headers.clone(),
            |headers| sanitize_request(headers, &policy, false),
            criterion::BatchSize::SmallInput,
        )
    });
}

/// `require` as a session's identity is built: parse the claims, check
/// three entries. Done once per opened session, not per request.
fn claims_requirements(c: &mut Criterion) {
    use portcullis::config::{ClaimFormat, ClaimRequirement};
    use portcullis::internals::require;

    let userinfo = serde_json::json!({
        "sub": "248289761001", "email": "alice@example.com", "email_verified": true,
        "name": "Alice Example", "preferred_username": "alice", "hd": "example.com",
        "groups": ["admins", "users", "ops", "finance", "eng"],
        "realm_access": { "roles": ["offline_access", "uma_authorization", "portal-users"] },
    })
    .to_string();
    let requirements = [
        ClaimRequirement {
            name: "groups".into(),
            format: ClaimFormat::StringArray,
            values: vec!["admins".into()],
        },
        ClaimRequirement {
            name: "realm_access.roles".into(),
            format: ClaimFormat::StringArray,
            values: vec!["portal-users".into()],
        },
        ClaimRequirement {
            name: "hd".into(),
            format: ClaimFormat::SingleString,
            values: vec!["example.com".into()],
        },
    ];
    c.bench_function("require_parse_and_check_3", |b| {
        b.iter(|| {
            let claims: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(black_box(&userinfo)).unwrap();
            black_box(require::check(&requirements, &[&claims]))
        })
    });
}

criterion_group!(
    benches,
    open_cookie,
    identity_data,
    rules,
    paths,
    claims_requirements
);
criterion_main!(benches);
