//! `portcullis keygen`: fresh secrets for a deployment, printed plain or as a
//! Kubernetes Secret.

use base64::Engine as _;

use crate::config::{Secret, SigningConfig, TokenEncoding};
use crate::identity::signing::{DataSigner, SigningError, generate_private_key_pem};

/// A session secret and a signing key with its key id.
pub struct Keys {
    /// Base64 of 32 random bytes, for `sessions.secrets`.
    pub session_secret: Secret,
    /// PKCS#8 PEM of a P-256 key, for `signing.private_key_file`.
    pub signing_key_pem: Secret,
    /// The key id verifiers will see (`kid`), derived from the key.
    pub key_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("the system random number generator failed")]
    Random,
    #[error(transparent)]
    Signing(#[from] SigningError),
}

pub fn generate() -> Result<Keys, KeygenError> {
    let mut session = [0u8; 32];
    aws_lc_rs::rand::fill(&mut session).map_err(|_| KeygenError::Random)?;
    let signing_key_pem = generate_private_key_pem()?;
    let signer = DataSigner::new(&SigningConfig {
        private_key_pem: Some(signing_key_pem.clone()),
        key_id: None,
        signer: String::new(),
        encoding: TokenEncoding::Alb,
    })?;
    Ok(Keys {
        session_secret: Secret::new(base64::engine::general_purpose::STANDARD.encode(session)),
        key_id: signer.key_id().to_owned(),
        signing_key_pem,
    })
}

impl Keys {
    pub fn plain(&self) -> String {
        format!(
            "# portcullis keygen: keep these secret, and give every replica the same ones.\n\
             # sessions.secrets (base64 of 32 bytes):\n\
             {session}\n\
             # signing.private_key_file (P-256, PKCS#8); its key id (kid) is {kid}\n\
             {pem}",
            session = self.session_secret.expose(),
            kid = self.key_id,
            pem = with_newline(self.signing_key_pem.expose()),
        )
    }

    /// A Secret whose keys mount as files for `sessions.secrets_file` and
    /// `signing.private_key_file`.
    pub fn kubernetes_secret(&self, name: &str) -> String {
        let pem: String = with_newline(self.signing_key_pem.expose())
            .lines()
            .map(|line| format!("    {line}\n"))
            .collect();
        format!(
            "# portcullis keygen: signing key id (kid) {kid}\n\
             apiVersion: v1\n\
             kind: Secret\n\
             metadata:\n  name: {name}\n\
             type: Opaque\n\
             stringData:\n  \
             session_secret: \"{session}\"\n  \
             signing.pem: |\n{pem}",
            kid = self.key_id,
            session = self.session_secret.expose(),
        )
    }
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_valid_and_agree_with_their_key_id() {
        let first = generate().unwrap();
        let second = generate().unwrap();
        assert_ne!(first.session_secret, second.session_secret);
        let secret = base64::engine::general_purpose::STANDARD
            .decode(first.session_secret.expose())
            .unwrap();
        assert_eq!(secret.len(), 32);
        assert!(
            first
                .signing_key_pem
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(crate::identity::signing::is_uuid(&first.key_id));

        let plain = first.plain();
        assert!(plain.contains(first.session_secret.expose()));
        assert!(plain.contains(&first.key_id));
        let manifest = first.kubernetes_secret("portcullis-secrets");
        assert!(manifest.contains("kind: Secret"));
        assert!(manifest.contains("    -----BEGIN PRIVATE KEY-----"));
    }
}
