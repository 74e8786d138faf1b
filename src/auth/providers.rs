//! The IdP connections of one configuration. Rules that name the same IdP
//! share one [`Provider`], and a reload keeps each provider whose settings it
//! did not change, with the endpoints and keys it has already loaded.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::oidc::http::IdpClient;
use super::oidc::provider::{ConfiguredEndpoints, Provider};

/// What makes two providers the same IdP connection.
#[derive(Clone, PartialEq)]
enum Key {
    /// An authenticate action's IdP: endpoints discovered or configured.
    Login {
        issuer: String,
        endpoints: Box<ConfiguredEndpoints>,
        idp_timeout: Duration,
    },
    /// A `jwt_validation` key set.
    Jwks {
        issuer: String,
        jwks_uri: Url,
        idp_timeout: Duration,
    },
}

/// The providers built for one configuration.
#[derive(Default)]
pub struct Providers {
    built: Vec<(Key, Arc<Provider>)>,
    /// Those the configuration before this one had, to be kept if asked for again.
    previous: Vec<(Key, Arc<Provider>)>,
    /// Made for this configuration rather than kept: still loading.
    fresh: Vec<Arc<Provider>>,
}

impl Providers {
    /// An empty set that reuses the providers of `previous` asked for again.
    pub fn after(previous: &Self) -> Self {
        Self {
            previous: previous.built.clone(),
            ..Self::default()
        }
    }

    /// The provider of an authenticate action, loading in the background if new.
    pub fn login(
        &mut self,
        issuer: String,
        endpoints: ConfiguredEndpoints,
        idp_timeout: Duration,
    ) -> Arc<Provider> {
        let key = Key::Login {
            issuer: issuer.clone(),
            endpoints: Box::new(endpoints.clone()),
            idp_timeout,
        };
        self.get(key, || {
            Provider::new(issuer, endpoints, IdpClient::new(idp_timeout))
        })
    }

    /// The provider of a `jwt_validation` key set; `make` builds it if new.
    pub fn jwks(
        &mut self,
        issuer: &str,
        jwks_uri: &Url,
        idp_timeout: Duration,
        make: impl FnOnce() -> Provider,
    ) -> Arc<Provider> {
        let key = Key::Jwks {
            issuer: issuer.to_owned(),
            jwks_uri: jwks_uri.clone(),
            idp_timeout,
        };
        self.get(key, make)
    }

    fn get(&mut self, key: Key, make: impl FnOnce() -> Provider) -> Arc<Provider> {
        if let Some((_, provider)) = self.built.iter().find(|(built, _)| *built == key) {
            return Arc::clone(provider);
        }
        let kept = self
            .previous
            .iter()
            .find(|(previous, _)| *previous == key)
            .map(|(_, provider)| Arc::clone(provider));
        let provider = kept.unwrap_or_else(|| {
            let provider = Arc::new(make());
            provider.start();
            self.fresh.push(Arc::clone(&provider));
            provider
        });
        self.built.push((key, Arc::clone(&provider)));
        provider
    }

    /// The providers readiness waits for: those of authenticate actions
    /// (ALB serves `jwt_validation` rules at once and fetches keys when needed).
    pub fn logins(&self) -> Vec<Arc<Provider>> {
        self.built
            .iter()
            .filter(|(key, _)| matches!(key, Key::Login { .. }))
            .map(|(_, provider)| Arc::clone(provider))
            .collect()
    }

    /// Waits until every provider new to this configuration has loaded its
    /// endpoints and keys, or failed to (each IdP call is bounded by its
    /// `idp_timeout`). Returns the issuers of the login providers that
    /// failed; a key set that failed is logged, and loads when first needed.
    pub async fn load_fresh(&self) -> Vec<String> {
        let mut loading = tokio::task::JoinSet::new();
        for (key, provider) in &self.built {
            if !self.fresh.iter().any(|fresh| Arc::ptr_eq(fresh, provider)) {
                continue;
            }
            let login = matches!(key, Key::Login { .. });
            let provider = Arc::clone(provider);
            loading.spawn(async move {
                let loaded = provider.load().await;
                (provider.issuer().to_owned(), login, loaded)
            });
        }
        let mut failed = Vec::new();
        while let Some(joined) = loading.join_next().await {
            match joined {
                Ok((issuer, true, Err(_))) => failed.push(issuer),
                Ok((issuer, false, Err(error))) => {
                    tracing::warn!(%issuer, %error, "a jwt_validation key set did not load; it is fetched when first needed");
                }
                _ => {}
            }
        }
        failed.sort();
        failed
    }

    /// Lets go of the previous configuration's providers not asked for again.
    pub fn forget_previous(&mut self) {
        self.previous.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> ConfiguredEndpoints {
        ConfiguredEndpoints {
            discovery: true,
            ..ConfiguredEndpoints::default()
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn rules_naming_one_idp_share_its_provider() {
        let mut providers = Providers::default();
        let first = providers.login("https://idp.example".into(), endpoints(), TIMEOUT);
        let second = providers.login("https://idp.example".into(), endpoints(), TIMEOUT);
        let other = providers.login("https://other.example".into(), endpoints(), TIMEOUT);
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(providers.logins().len(), 2);
        assert_eq!(providers.fresh.len(), 2);
    }

    #[tokio::test]
    async fn a_reload_keeps_the_providers_it_did_not_change() {
        let mut before = Providers::default();
        let kept = before.login("https://idp.example".into(), endpoints(), TIMEOUT);
        let changed = before.login("https://other.example".into(), endpoints(), TIMEOUT);

        let mut after = Providers::after(&before);
        let same = after.login("https://idp.example".into(), endpoints(), TIMEOUT);
        let longer = after.login(
            "https://other.example".into(),
            endpoints(),
            Duration::from_secs(9),
        );
        after.forget_previous();
        assert!(Arc::ptr_eq(&kept, &same));
        assert!(
            !Arc::ptr_eq(&changed, &longer),
            "a changed idp_timeout is a new provider"
        );
        assert_eq!(after.fresh.len(), 1, "only the changed one loads again");
        assert_eq!(after.logins().len(), 2);
    }

    #[tokio::test]
    async fn key_sets_are_not_waited_for_by_readiness() {
        let mut providers = Providers::default();
        let uri = Url::parse("https://idp.example/jwks").unwrap();
        let jwks = providers.jwks("https://idp.example", &uri, TIMEOUT, || {
            Provider::jwks_only(
                "https://idp.example".into(),
                uri.clone(),
                IdpClient::new(TIMEOUT),
                10,
            )
        });
        let again = providers.jwks("https://idp.example", &uri, TIMEOUT, || unreachable!());
        assert!(Arc::ptr_eq(&jwks, &again));
        assert!(providers.logins().is_empty());
    }
}
