//! The signer of `x-amzn-oidc-data`: an ES256 JWT in ALB's format (or plain
//! RFC 7515), the P-256 key it is signed with, and that key's public forms
//! (PEM for ALB's key-server URL, a JWKS).

mod cache;
mod claims;

pub use cache::{DataTokenCache, fingerprint};

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::error::{KeyRejected, Unspecified};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self, PemObject};

use crate::config::{Secret, SigningConfig, TokenEncoding};

/// Why a signing key could not be loaded or a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(
        "signing.private_key holds no PEM private key (expected \"BEGIN PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")"
    )]
    Pem(#[source] pem::Error),
    #[error(
        "signing.private_key is an RSA key; x-amzn-oidc-data is signed ES256 and needs a P-256 key (`portcullis keygen` prints one)"
    )]
    RsaKey,
    #[error(
        "signing.private_key is not a P-256 EC private key (x-amzn-oidc-data is signed ES256; `portcullis keygen` prints one)"
    )]
    NotP256(#[source] KeyRejected),
    #[error(
        "signing.key_id {0:?} is not a UUID (8-4-4-4-12 hex digits), which aws-jwt-verify requires; omit it to derive one from the key"
    )]
    KeyIdNotUuid(String),
    #[error("could not generate a P-256 signing key")]
    Generate(#[source] Unspecified),
    #[error("could not encode the signing key")]
    Encode(#[source] Unspecified),
    #[error("ECDSA signing failed")]
    Sign(#[source] Unspecified),
    #[error("userinfo claims are not valid JSON")]
    ClaimsNotJson(#[source] serde_json::Error),
    #[error("userinfo claims are not UTF-8")]
    ClaimsNotUtf8(#[source] std::str::Utf8Error),
    #[error("userinfo claims are not a JSON object")]
    ClaimsNotObject,
    #[error("userinfo claims could not be scanned")]
    ClaimsMalformed,
}

/// Signs `x-amzn-oidc-data` with one P-256 key and publishes its public half.
pub struct DataSigner {
    /// The private key; `Debug` never shows it.
    key_pair: EcdsaKeyPair,
    /// A UUID: the configured one, or derived from the public key so that
    /// replicas sharing a key agree on it.
    key_id: String,
    /// The `signer` header field (an ALB ARN on AWS).
    signer: String,
    encoding: TokenEncoding,
    /// True when no key was configured and this one exists only in memory:
    /// other replicas and the next restart will sign with another key.
    generated: bool,
    /// Computed once: served on every `/oauth2/public-keys/{kid}` request.
    public_key_pem: String,
    /// Computed once: served on every `/oauth2/jwks.json` request.
    jwks_json: String,
    /// Fingerprint of everything fixed per signer (key, kid, signer,
    /// encoding): mixed into cache keys so that a cache shared across a key
    /// change never returns a token made with the old one.
    cache_salt: [u8; 16],
    /// aws-lc-rs ignores it for ECDSA (it draws its own nonces) but the
    /// signature of `sign` asks for one.
    rng: SystemRandom,
}

impl DataSigner {
    /// Loads the configured P-256 key (PKCS#8 or SEC1 PEM) or, when there is
    /// none, generates one; the caller warns that replicas will disagree.
    pub fn new(config: &SigningConfig) -> Result<Self, SigningError> {
        let (key_pair, generated) = match &config.private_key_pem {
            Some(pem) => (load_private_key(pem)?, false),
            None => (
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(SigningError::Generate)?,
                true,
            ),
        };
        let spki = key_pair
            .public_key()
            .as_der()
            .map_err(SigningError::Encode)?;
        let key_id = match &config.key_id {
            Some(kid) if is_uuid(kid) => kid.clone(),
            Some(kid) => return Err(SigningError::KeyIdNotUuid(kid.clone())),
            None => derive_key_id(spki.as_ref()),
        };
        let public_key_pem = pem_encode("PUBLIC KEY", spki.as_ref());
        let jwks_json = jwks(key_pair.public_key().as_ref(), &key_id)?;
        let encoding_tag: &[u8] = match config.encoding {
            TokenEncoding::Alb => b"alb",
            TokenEncoding::Jws => b"jws",
        };
        let cache_salt = fingerprint(&[
            spki.as_ref(),
            key_id.as_bytes(),
            config.signer.as_bytes(),
            encoding_tag,
        ])
        .to_be_bytes();
        Ok(Self {
            key_pair,
            key_id,
            signer: config.signer.clone(),
            encoding: config.encoding,
            generated,
            public_key_pem,
            jwks_json,
            cache_salt,
            rng: SystemRandom::new(),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether the key was generated at start rather than configured.
    pub fn generated(&self) -> bool {
        self.generated
    }

    /// The `x-amzn-oidc-data` token. `claims_json` is the userinfo response
    /// (a JSON object), kept byte for byte except that `exp` and `iss` are
    /// replaced by the given ones.
    pub fn sign(
        &self,
        issuer: &str,
        client_id: &str,
        claims_json: &[u8],
        exp: u64,
    ) -> Result<String, SigningError> {
        // Built by hand to keep ALB's field order; values go through
        // serde_json so that any character is escaped properly.
        let header = format!(
            r#"{{"typ":"JWT","kid":{},"alg":"ES256","iss":{},"client":{},"signer":{},"exp":{exp}}}"#,
            json_string(&self.key_id),
            json_string(issuer),
            json_string(client_id),
            json_string(&self.signer),
        );
        let payload = claims::with_exp_and_iss(claims_json, exp, issuer)?;

        let engine = self.base64();
        let mut token = String::with_capacity((header.len() + payload.len() + 64) * 4 / 3 + 8);
        engine.encode_string(header, &mut token);
        token.push('.');
        engine.encode_string(&payload, &mut token);
        // ALB signs the text exactly as sent, padding included; verifiers
        // (aws-jwt-verify, AWS's Python sample) check `header.payload` as is.
        let signature = self
            .key_pair
            .sign(&self.rng, token.as_bytes())
            .map_err(SigningError::Sign)?;
        token.push('.');
        engine.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// [`sign`](Self::sign) through `cache`: the same (issuer, client,
    /// claims, exp) reuses one signature until `exp`. `now` is
    /// the current unix time in seconds.
    pub fn sign_cached(
        &self,
        cache: &DataTokenCache,
        issuer: &str,
        client_id: &str,
        claims_json: &[u8],
        exp: u64,
        now: u64,
    ) -> Result<Arc<str>, SigningError> {
        let key = fingerprint(&[
            &self.cache_salt,
            issuer.as_bytes(),
            client_id.as_bytes(),
            claims_json,
            &exp.to_be_bytes(),
        ]);
        cache.get_or_sign(key, exp, now, || {
            self.sign(issuer, client_id, claims_json, exp)
        })
    }

    /// PEM SubjectPublicKeyInfo, the body ALB's key server returns for a kid.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// `{"keys":[…]}` with this key, for verifiers that take a JWKS.
    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }

    fn base64(&self) -> &'static GeneralPurpose {
        match self.encoding {
            TokenEncoding::Alb => &URL_SAFE,
            TokenEncoding::Jws => &URL_SAFE_NO_PAD,
        }
    }
}

impl fmt::Debug for DataSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataSigner")
            .field("key_id", &self.key_id)
            .field("signer", &self.signer)
            .field("encoding", &self.encoding)
            .field("generated", &self.generated)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// A fresh P-256 key as PKCS#8 PEM (`portcullis keygen`, and tests).
pub fn generate_private_key_pem() -> Result<Secret, SigningError> {
    let key_pair =
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(SigningError::Generate)?;
    let pkcs8 = key_pair.to_pkcs8v1().map_err(SigningError::Encode)?;
    Ok(Secret::new(pem_encode("PRIVATE KEY", pkcs8.as_ref())))
}

fn load_private_key(pem: &Secret) -> Result<EcdsaKeyPair, SigningError> {
    // `from_pem_slice` skips sections that are not private keys, such as the
    // "EC PARAMETERS" block `openssl ecparam -genkey` writes first.
    let der = PrivateKeyDer::from_pem_slice(pem.expose().as_bytes()).map_err(SigningError::Pem)?;
    match der {
        PrivateKeyDer::Pkcs1(_) => Err(SigningError::RsaKey),
        // Checks the curve too: a P-384 or RSA PKCS#8 key is rejected here.
        PrivateKeyDer::Pkcs8(_) | PrivateKeyDer::Sec1(_) => {
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der())
                .map_err(SigningError::NotP256)
        }
        // `PrivateKeyDer` is non-exhaustive; a future format is not ours.
        _ => Err(SigningError::Pem(pem::Error::NoItemsFound)),
    }
}

/// `8-4-4-4-12` hex digits, either case: what aws-jwt-verify's `uuidRegex`
/// accepts as a kid. Public so that `portcullis check` can report a bad
/// `signing.key_id` along with every other problem.
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, byte)| match i {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// A version-8 (RFC 9562 "custom") UUID from SHA-256 of the SPKI: the same
/// key gives the same kid on every replica and every restart.
fn derive_key_id(spki: &[u8]) -> String {
    let mut bytes = fingerprint(&[b"portcullis x-amzn-oidc-data kid", spki]).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    let n = u128::from_be_bytes(bytes);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        n >> 96,
        (n >> 80) & 0xffff,
        (n >> 64) & 0xffff,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

/// The JWKS for one key; `point` is the uncompressed SEC1 point 04‖X‖Y.
fn jwks(point: &[u8], key_id: &str) -> Result<String, SigningError> {
    let (x, y) = match point {
        [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
        _ => return Err(SigningError::Encode(Unspecified)),
    };
    let jwks = serde_json::json!({
        "keys": [{
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": key_id,
            "alg": "ES256",
            "use": "sig",
        }]
    });
    Ok(jwks.to_string())
}

/// A JSON string literal (quoted, escaped).
pub(crate) fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// PEM with 64-column lines, as OpenSSL writes it.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for (i, c) in body.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out.push_str("\n-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests;
