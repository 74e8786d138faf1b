//! Signing, key loading and key publication, checked with independent
//! verifiers (jsonwebtoken; aws-lc-rs over the padded text for ALB format).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::sync::Arc;

use super::*;

const ISSUER: &str = "https://idp.example.com";
const CLIENT: &str = "app-client";
const ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/portcullis/0";
const KID: &str = "6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44";
/// Far enough ahead that jsonwebtoken's `exp` check passes.
const EXP: u64 = 4_102_444_800;

fn config(pem: Option<Secret>, key_id: Option<&str>, encoding: TokenEncoding) -> SigningConfig {
    SigningConfig {
        private_key_pem: pem,
        key_id: key_id.map(str::to_owned),
        signer: ARN.to_owned(),
        encoding,
    }
}

fn signer(encoding: TokenEncoding) -> DataSigner {
    DataSigner::new(&config(None, Some(KID), encoding)).unwrap()
}

/// The P-256 point 04‖X‖Y: the last 65 bytes of a P-256 SPKI.
fn public_point(signer: &DataSigner) -> Vec<u8> {
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(signer.public_key_pem().as_bytes()).unwrap();
    let der = spki.as_ref();
    assert_eq!(der.len(), 91, "a P-256 SPKI");
    der[der.len() - 65..].to_vec()
}

fn segments(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    [parts[0], parts[1], parts[2]]
}

#[test]
fn jws_token_verifies_with_jsonwebtoken() {
    let signer = signer(TokenEncoding::Jws);
    let claims = br#"{"sub":"u-1","email":"a@example.com","aud":"x"}"#;
    let token = signer.sign(ISSUER, CLIENT, claims, EXP).unwrap();
    assert!(!token.contains('='), "RFC 7515 is unpadded: {token}");

    let key = DecodingKey::from_ec_pem(signer.public_key_pem().as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims["sub"], "u-1");
    assert_eq!(data.claims["exp"], EXP);
    assert_eq!(data.claims["iss"], ISSUER);

    let header = data.header;
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.kid.as_deref(), Some(KID));
    assert_eq!(
        header.extras.get::<String>("iss").unwrap().as_deref(),
        Some(ISSUER)
    );
    assert_eq!(
        header.extras.get::<String>("client").unwrap().as_deref(),
        Some(CLIENT)
    );
    assert_eq!(
        header.extras.get::<String>("signer").unwrap().as_deref(),
        Some(ARN)
    );
    assert_eq!(header.extras.get::<u64>("exp").unwrap(), Some(EXP));
}

#[test]
fn jws_token_with_a_wrong_key_does_not_verify() {
    let token = signer(TokenEncoding::Jws)
        .sign(ISSUER, CLIENT, b"{}", EXP)
        .unwrap();
    let other = signer(TokenEncoding::Jws);
    let key = DecodingKey::from_ec_pem(other.public_key_pem().as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &validation).is_err());
}

#[test]
fn alb_token_is_padded_and_signed_over_the_padded_text() {
    let signer = signer(TokenEncoding::Alb);
    // Lengths chosen so every segment needs padding (payload and header are
    // not multiples of 3; a 64-byte signature always ends in "==").
    let token = signer
        .sign(ISSUER, CLIENT, br#"{"sub":"u-1"}"#, EXP)
        .unwrap();
    let [header, payload, signature] = segments(&token);
    for segment in [header, payload, signature] {
        assert_eq!(segment.len() % 4, 0, "{segment}");
    }
    assert!(signature.ends_with("=="), "{signature}");
    assert!(
        token.contains("=."),
        "the test should exercise padding: {token}"
    );

    let raw_signature = URL_SAFE.decode(signature).unwrap();
    assert_eq!(raw_signature.len(), 64, "raw R||S, not DER");
    let signed_text = format!("{header}.{payload}");
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_point(&signer));
    key.verify(signed_text.as_bytes(), &raw_signature).unwrap();
    // The unpadded text is a different message: ALB verifiers would fail
    // if we signed that instead.
    let unpadded = format!(
        "{}.{}",
        header.trim_end_matches('='),
        payload.trim_end_matches('=')
    );
    assert!(key.verify(unpadded.as_bytes(), &raw_signature).is_err());
}

#[test]
fn alb_header_has_exactly_albs_fields_in_order() {
    let signer = signer(TokenEncoding::Alb);
    let token = signer.sign(ISSUER, CLIENT, b"{}", EXP).unwrap();
    let header = URL_SAFE.decode(segments(&token)[0]).unwrap();
    assert_eq!(
        String::from_utf8(header).unwrap(),
        format!(
            r#"{{"typ":"JWT","kid":"{KID}","alg":"ES256","iss":"{ISSUER}","client":"{CLIENT}","signer":"{ARN}","exp":{EXP}}}"#
        )
    );
}

#[test]
fn header_values_are_json_escaped() {
    let signer = signer(TokenEncoding::Jws);
    let token = signer.sign("https://idp/\"x", "c\\d", b"{}", EXP).unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments(&token)[0]).unwrap()).unwrap();
    assert_eq!(header["iss"], "https://idp/\"x");
    assert_eq!(header["client"], "c\\d");
}

#[test]
fn payload_is_the_claims_verbatim_plus_exp_and_iss() {
    let signer = signer(TokenEncoding::Alb);
    let claims = r#"{"sub":"u-1","exp":1,"name":"Zoë Ñandú 🚀","groups":["a","b"],"address":{"street":"1 \"Main\" St","geo":{"lat":52.5200,"lng":-13.4e1}},"n":12345678901234567890,"iss":"https://evil","ok":true}"#;
    let token = signer.sign(ISSUER, CLIENT, claims.as_bytes(), EXP).unwrap();
    let payload = URL_SAFE.decode(segments(&token)[1]).unwrap();
    assert_eq!(
        String::from_utf8(payload).unwrap(),
        format!(
            r#"{{"sub":"u-1","name":"Zoë Ñandú 🚀","groups":["a","b"],"address":{{"street":"1 \"Main\" St","geo":{{"lat":52.5200,"lng":-13.4e1}}}},"n":12345678901234567890,"ok":true,"exp":{EXP},"iss":"{ISSUER}"}}"#
        )
    );
}

#[test]
fn claims_that_are_not_an_object_are_refused() {
    let signer = signer(TokenEncoding::Alb);
    assert!(matches!(
        signer.sign(ISSUER, CLIENT, b"[]", EXP),
        Err(SigningError::ClaimsNotObject)
    ));
    assert!(matches!(
        signer.sign(ISSUER, CLIENT, b"{\"a\":", EXP),
        Err(SigningError::ClaimsNotJson(_))
    ));
}

#[test]
fn configured_key_id_must_be_a_uuid() {
    for bad in [
        "my-key",
        "",
        "6f1c3e0a8d2b4c479a8e2f5b7d9c1e44",
        "6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e4g",
        "{6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44}",
        "6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44 ",
    ] {
        let err = DataSigner::new(&config(None, Some(bad), TokenEncoding::Alb)).unwrap_err();
        assert!(
            matches!(&err, SigningError::KeyIdNotUuid(kid) if kid == bad),
            "{bad:?}"
        );
        assert!(err.to_string().contains("not a UUID"), "{err}");
    }
    let upper = "6F1C3E0A-8D2B-4C47-9A8E-2F5B7D9C1E44";
    let signer = DataSigner::new(&config(None, Some(upper), TokenEncoding::Alb)).unwrap();
    assert_eq!(signer.key_id(), upper);
}

fn assert_uuid_v8(kid: &str) {
    assert!(is_uuid(kid), "{kid}");
    assert_eq!(kid, kid.to_ascii_lowercase());
    assert_eq!(&kid[14..15], "8", "version 8: {kid}");
    assert!(
        matches!(&kid[19..20], "8" | "9" | "a" | "b"),
        "RFC 9562 variant: {kid}"
    );
}

#[test]
fn derived_key_id_is_a_stable_uuid() {
    let pem = generate_private_key_pem().unwrap();
    let first = DataSigner::new(&config(Some(pem.clone()), None, TokenEncoding::Alb)).unwrap();
    let second = DataSigner::new(&config(Some(pem), None, TokenEncoding::Jws)).unwrap();
    assert_uuid_v8(first.key_id());
    assert_eq!(first.key_id(), second.key_id());

    let other = DataSigner::new(&config(None, None, TokenEncoding::Alb)).unwrap();
    assert_uuid_v8(other.key_id());
    assert_ne!(first.key_id(), other.key_id());
}

#[test]
fn generated_pkcs8_pem_round_trips() {
    let pem = generate_private_key_pem().unwrap();
    assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(pem.expose().ends_with("-----END PRIVATE KEY-----\n"));
    assert!(pem.expose().lines().all(|line| line.len() <= 64));
    // jsonwebtoken's own PKCS#8 reader accepts it too.
    jsonwebtoken::EncodingKey::from_ec_pem(pem.expose().as_bytes()).unwrap();

    let loaded = DataSigner::new(&config(Some(pem.clone()), None, TokenEncoding::Alb)).unwrap();
    assert!(!loaded.generated());
    let again = DataSigner::new(&config(Some(pem), None, TokenEncoding::Alb)).unwrap();
    assert_eq!(loaded.public_key_pem(), again.public_key_pem());

    let token = loaded.sign(ISSUER, CLIENT, b"{}", EXP).unwrap();
    let [header, payload, signature] = segments(&token);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_point(&again))
        .verify(
            format!("{header}.{payload}").as_bytes(),
            &URL_SAFE.decode(signature).unwrap(),
        )
        .unwrap();
}

#[test]
fn absent_key_is_generated_and_flagged() {
    let signer = DataSigner::new(&config(None, None, TokenEncoding::Alb)).unwrap();
    assert!(signer.generated());
}

#[test]
fn sec1_pem_with_ec_parameters_loads() {
    let key_pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let sec1 = key_pair.private_key().as_der().unwrap();
    // What `openssl ecparam -name prime256v1 -genkey` writes.
    let pem = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        pem_encode("EC PRIVATE KEY", sec1.as_ref())
    );
    let signer =
        DataSigner::new(&config(Some(Secret::new(pem)), None, TokenEncoding::Alb)).unwrap();
    assert_eq!(public_point(&signer), key_pair.public_key().as_ref());
}

#[test]
fn wrong_keys_are_refused_clearly() {
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let rsa_pkcs8 = pem_encode("PRIVATE KEY", rsa.as_der().unwrap().as_ref());
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let p384_pkcs8 = pem_encode("PRIVATE KEY", p384.to_pkcs8v1().unwrap().as_ref());
    let rsa_pkcs1 = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    let public_only = signer(TokenEncoding::Alb).public_key_pem().to_owned();
    type Expected = fn(&SigningError) -> bool;
    let cases: [(&str, &str, Expected); 7] = [
        ("rsa pkcs8", &rsa_pkcs8, |e| {
            matches!(e, SigningError::NotP256(_))
        }),
        ("p-384", &p384_pkcs8, |e| {
            matches!(e, SigningError::NotP256(_))
        }),
        ("rsa pkcs1", rsa_pkcs1, |e| {
            matches!(e, SigningError::RsaKey)
        }),
        ("garbage", "not a key at all", |e| {
            matches!(e, SigningError::Pem(_))
        }),
        ("empty", "", |e| matches!(e, SigningError::Pem(_))),
        ("public key", &public_only, |e| {
            matches!(e, SigningError::Pem(_))
        }),
        (
            "bad base64",
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
            |e| matches!(e, SigningError::Pem(_)),
        ),
    ];
    for (name, pem, expected) in cases {
        let err = DataSigner::new(&config(
            Some(Secret::new(pem)),
            Some(KID),
            TokenEncoding::Alb,
        ))
        .unwrap_err();
        assert!(expected(&err), "{name}: {err:?}");
        assert!(
            err.to_string().starts_with("signing.private_key"),
            "{name}: {err}"
        );
    }
    // A truncated but well-formed PEM of the right kind.
    let err = DataSigner::new(&config(
        Some(Secret::new(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )),
        None,
        TokenEncoding::Alb,
    ))
    .unwrap_err();
    assert!(matches!(err, SigningError::NotP256(_)), "{err:?}");
}

#[test]
fn jwks_components_are_the_public_point_and_verify_tokens() {
    let signer = signer(TokenEncoding::Jws);
    let jwks: Value = serde_json::from_str(signer.jwks_json()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], KID);
    let x = jwk["x"].as_str().unwrap();
    let y = jwk["y"].as_str().unwrap();
    let (x_bytes, y_bytes) = (
        URL_SAFE_NO_PAD.decode(x).unwrap(),
        URL_SAFE_NO_PAD.decode(y).unwrap(),
    );
    assert_eq!((x_bytes.len(), y_bytes.len()), (32, 32));
    let point = public_point(&signer);
    assert_eq!((&point[1..33], &point[33..]), (&x_bytes[..], &y_bytes[..]));

    let token = signer.sign(ISSUER, CLIENT, br#"{"sub":"s"}"#, EXP).unwrap();
    let key = DecodingKey::from_ec_components(x, y).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims, json!({"sub": "s", "exp": EXP, "iss": ISSUER}));
}

#[test]
fn debug_never_shows_key_material() {
    let pem = generate_private_key_pem().unwrap();
    let body: String = pem.expose().lines().nth(1).unwrap().to_owned();
    let signer = DataSigner::new(&config(Some(pem), None, TokenEncoding::Alb)).unwrap();
    let debug = format!("{signer:?}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert!(!debug.contains(&body[..16]), "{debug}");
    assert!(debug.contains(signer.key_id()));
}

#[test]
fn sign_cached_reuses_a_signature_per_session_and_per_key() {
    let cache = DataTokenCache::new(1024);
    let signer_a = signer(TokenEncoding::Alb);
    let signer_b = signer(TokenEncoding::Alb); // same kid, another key
    let claims = br#"{"sub":"u-1"}"#;
    let first = signer_a
        .sign_cached(&cache, ISSUER, CLIENT, claims, 1000, 0)
        .unwrap();
    let second = signer_a
        .sign_cached(&cache, ISSUER, CLIENT, claims, 1000, 500)
        .unwrap();
    assert!(Arc::ptr_eq(&first, &second), "the cached token is reused");
    // ECDSA signatures are randomised: a fresh signature would differ.
    let other_key = signer_b
        .sign_cached(&cache, ISSUER, CLIENT, claims, 1000, 500)
        .unwrap();
    assert_ne!(first, other_key);
    for (issuer, client, claims, exp) in [
        ("https://other", CLIENT, &claims[..], 1000),
        (ISSUER, "other", &claims[..], 1000),
        (ISSUER, CLIENT, &br#"{"sub":"u-2"}"#[..], 1000),
        (ISSUER, CLIENT, &claims[..], 1001),
    ] {
        let token = signer_a
            .sign_cached(&cache, issuer, client, claims, exp, 500)
            .unwrap();
        assert_ne!(first, token, "{issuer} {client} {exp}");
    }
    let last_second = signer_a
        .sign_cached(&cache, ISSUER, CLIENT, claims, 1000, 999)
        .unwrap();
    assert!(Arc::ptr_eq(&first, &last_second), "reused until exp");
    let expired = signer_a
        .sign_cached(&cache, ISSUER, CLIENT, claims, 1000, 1000)
        .unwrap();
    assert_ne!(first, expired);
}
