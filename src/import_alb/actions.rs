//! ALB rule actions, in `Order`, to portcullis actions: the authenticate
//! actions with their client secrets as placeholders, and the terminal
//! ones with target groups resolved through `--target`.

use serde_json::Value;

use super::aws::{
    Action, AuthCommon, CognitoConfig, FixedResponseConfig, JwtValidationConfig, OidcConfig,
    RedirectConfig,
};
use super::yaml::{MapBuilder, Node};
use super::{Importer, env_name};

impl Importer<'_> {
    /// The rule's action list, or why the rule cannot be carried over.
    pub(super) fn actions(&mut self, rule: &str, actions: &[Action]) -> Result<Vec<Node>, String> {
        let mut ordered: Vec<&Action> = actions.iter().collect();
        ordered.sort_by_key(|action| action.order.unwrap_or(u32::MAX));
        let mut out = Vec::with_capacity(ordered.len());
        for action in ordered {
            let kind = action.kind.as_str();
            let (key, node) = match kind {
                "authenticate-oidc" => (
                    "authenticate_oidc",
                    self.oidc(rule, required(&action.authenticate_oidc_config, kind)?),
                ),
                "authenticate-cognito" => (
                    "authenticate_cognito",
                    self.cognito(rule, required(&action.authenticate_cognito_config, kind)?),
                ),
                "jwt-validation" => (
                    "jwt_validation",
                    self.jwt_validation(rule, required(&action.jwt_validation_config, kind)?),
                ),
                "forward" => ("forward", self.forward(action)?),
                "fixed-response" => (
                    "fixed_response",
                    fixed_response(required(&action.fixed_response_config, kind)?),
                ),
                "redirect" => (
                    "redirect",
                    redirect(required(&action.redirect_config, kind)?),
                ),
                other => return Err(format!("action type `{other}` is not one portcullis has")),
            };
            for key in action.other.keys() {
                self.note(
                    rule,
                    format!(
                        "{} action: `{key}` has no equivalent; not carried over",
                        action.kind
                    ),
                );
            }
            out.push(MapBuilder::new().put(key, node).build());
        }
        Ok(out)
    }

    fn oidc(&mut self, rule: &str, config: &OidcConfig) -> Node {
        let mut map = MapBuilder::new();
        map.put_str("issuer", config.issuer.as_deref())
            .put_str(
                "authorization_endpoint",
                config.authorization_endpoint.as_deref(),
            )
            .put_str("token_endpoint", config.token_endpoint.as_deref())
            .put_str("user_info_endpoint", config.user_info_endpoint.as_deref())
            .put_str("client_id", config.client_id.as_deref());
        let secret = self.client_secret(rule);
        map.put("client_secret", secret);
        if config.client_secret.is_some() {
            self.note(
                rule,
                "authenticate-oidc: ClientSecret is not written to the configuration; set it in the environment variable instead",
            );
        }
        if config.use_existing_client_secret.is_some() {
            self.note(
                rule,
                "authenticate-oidc: UseExistingClientSecret has no equivalent (the secret is always given); not carried over",
            );
        }
        let client = format!(
            "{} at {}",
            config.client_id.as_deref().unwrap_or_default(),
            config.issuer.as_deref().unwrap_or_default()
        );
        self.auth_common(rule, "authenticate-oidc", &config.common, &client, &mut map);
        self.unknown_keys(rule, "authenticate-oidc", config.other.keys());
        map.build()
    }

    fn cognito(&mut self, rule: &str, config: &CognitoConfig) -> Node {
        let mut map = MapBuilder::new();
        map.put_str("user_pool_arn", config.user_pool_arn.as_deref())
            .put_str("user_pool_client_id", config.user_pool_client_id.as_deref());
        let secret = self.client_secret(rule);
        map.put("user_pool_client_secret", secret)
            .put_str("user_pool_domain", config.user_pool_domain.as_deref());
        let client = format!(
            "{} in {}",
            config.user_pool_client_id.as_deref().unwrap_or_default(),
            config.user_pool_arn.as_deref().unwrap_or_default()
        );
        self.auth_common(
            rule,
            "authenticate-cognito",
            &config.common,
            &client,
            &mut map,
        );
        self.unknown_keys(rule, "authenticate-cognito", config.other.keys());
        map.build()
    }

    /// `${CLIENT_SECRET_<RULE>}`: AWS never prints the secret.
    fn client_secret(&mut self, rule: &str) -> Node {
        self.needs_sessions = true;
        self.placeholder(format!("CLIENT_SECRET_{}", env_name(rule)))
    }

    /// The keys both authenticate actions share, with ALB's behaviour where
    /// portcullis' default differs.
    fn auth_common(
        &mut self,
        rule: &str,
        kind: &str,
        common: &AuthCommon,
        client: &str,
        map: &mut MapBuilder,
    ) {
        if let Some(scope) = &common.scope {
            let scope = if scope.split_whitespace().any(|word| word == "openid") {
                scope.clone()
            } else {
                self.note(rule, format!("{kind}: Scope `{scope}` lacks openid, which portcullis needs; written as `openid {scope}`"));
                format!("openid {scope}")
            };
            map.put("scope", Node::str(scope));
        }
        let cookie = common
            .session_cookie_name
            .clone()
            .unwrap_or_else(|| "AWSELBAuthSessionCookie".to_owned());
        let cookie = match self.cookies.get(&cookie) {
            Some(other) if other != client => {
                let renamed = format!("{cookie}-{rule}");
                self.note(
                    rule,
                    format!(
                        "{kind}: session cookie `{cookie}` is also used by another IdP client on this listener, which portcullis refuses (the sessions would overwrite each other); renamed `{renamed}`"
                    ),
                );
                renamed
            }
            _ => cookie,
        };
        self.cookies.insert(cookie.clone(), client.to_owned());
        map.put("session_cookie_name", Node::str(&cookie));
        if let Some(timeout) = common.session_timeout {
            map.put("session_timeout", Node::Int(timeout));
        }
        let mut params = MapBuilder::new();
        let mut any = false;
        for (name, value) in &common.authentication_request_extra_params {
            if crate::auth::oidc::AUTHORIZATION_PARAMS.contains(&name.as_str()) {
                self.note(
                    rule,
                    format!("{kind}: extra parameter `{name}` is one portcullis sets itself; not carried over"),
                );
                continue;
            }
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            params.put(name, Node::str(text));
            any = true;
        }
        if any {
            map.put("authentication_request_extra_params", params.build());
        }
        if let Some(on_unauthenticated) = &common.on_unauthenticated_request {
            map.put(
                "on_unauthenticated_request",
                Node::str(on_unauthenticated.to_ascii_lowercase()),
            );
        }
        // ALB sends every unauthenticated request to the IdP; portcullis'
        // default answers API requests 401 instead.
        map.put("api_requests", Node::str("redirect"));
    }

    fn jwt_validation(&mut self, rule: &str, config: &JwtValidationConfig) -> Node {
        let mut map = MapBuilder::new();
        map.put_str("issuer", config.issuer.as_deref())
            .put_str("jwks_endpoint", config.jwks_endpoint.as_deref());
        if !config.additional_claims.is_empty() {
            let require = config
                .additional_claims
                .iter()
                .map(|claim| {
                    MapBuilder::new()
                        .put("name", Node::str(&claim.name))
                        .put_str("format", claim.format.as_deref())
                        .put("values", Node::strs(&claim.values))
                        .build()
                })
                .collect();
            map.put("require", Node::Seq(require));
        }
        self.unknown_keys(rule, "jwt-validation", config.other.keys());
        map.build()
    }

    fn unknown_keys<'k>(&mut self, rule: &str, kind: &str, keys: impl Iterator<Item = &'k String>) {
        for key in keys {
            self.note(
                rule,
                format!("{kind}: `{key}` has no equivalent; not carried over"),
            );
        }
    }

    /// One target group: `{ target }`; several: `{ targets, stickiness }`.
    fn forward(&mut self, action: &Action) -> Result<Node, String> {
        let config = action.forward_config.as_ref();
        let groups: Vec<(&str, Option<u32>)> = match config {
            Some(config) if !config.target_groups.is_empty() => config
                .target_groups
                .iter()
                .map(|group| (group.target_group_arn.as_str(), group.weight))
                .collect(),
            _ => action
                .target_group_arn
                .as_deref()
                .map(|arn| (arn, None))
                .into_iter()
                .collect(),
        };
        match groups.as_slice() {
            [] => Err("its forward action names no target group".to_owned()),
            [(arn, _)] => Ok(MapBuilder::new().put("target", self.target(arn)).build()),
            several => {
                let targets = several
                    .iter()
                    .map(|(arn, weight)| {
                        MapBuilder::new()
                            .put("target", self.target(arn))
                            // ALB splits evenly among groups given no weight.
                            .put("weight", Node::Int(u64::from(weight.unwrap_or(1))))
                            .build()
                    })
                    .collect();
                let mut map = MapBuilder::new();
                map.put("targets", Node::Seq(targets));
                let stickiness =
                    config.and_then(|config| config.target_group_stickiness_config.as_ref());
                if let Some(stickiness) = stickiness.filter(|stickiness| stickiness.enabled) {
                    // The AWSALBTG cookie's key derives from the session
                    // secret: with it, every replica honours the cookie.
                    self.needs_sessions = true;
                    let seconds = stickiness.duration_seconds.unwrap_or(3600);
                    map.put(
                        "stickiness",
                        MapBuilder::new()
                            .put("duration", Node::str(format!("{seconds}s")))
                            .build(),
                    );
                }
                Ok(map.build())
            }
        }
    }

    /// The URL `--target` gives the target group, or `${TARGET_<NAME>}`.
    fn target(&mut self, arn: &str) -> Node {
        let name = target_group_name(arn);
        let given = self
            .targets
            .iter()
            .find(|target| target.name == name || target.name == arn);
        match given {
            Some(target) => {
                let (used, url) = (target.name.clone(), target.url.clone());
                if !self.used_targets.contains(&used) {
                    self.used_targets.push(used);
                }
                Node::Str(url)
            }
            None => self.placeholder(format!("TARGET_{}", env_name(name))),
        }
    }
}

/// The action's `*Config`, which its type requires.
fn required<'c, T>(config: &'c Option<T>, kind: &str) -> Result<&'c T, String> {
    config
        .as_ref()
        .ok_or_else(|| format!("its {kind} action has no configuration"))
}

/// `arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID` → `NAME`.
fn target_group_name(arn: &str) -> &str {
    match arn.split_once(":targetgroup/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
        None => arn,
    }
}

fn fixed_response(config: &FixedResponseConfig) -> Node {
    let mut map = MapBuilder::new();
    map.put("status", status(&config.status_code))
        .put_str("content_type", config.content_type.as_deref())
        .put_str("body", config.message_body.as_deref());
    map.build()
}

fn redirect(config: &RedirectConfig) -> Node {
    let mut map = MapBuilder::new();
    map.put_str("protocol", config.protocol.as_deref())
        .put_str("host", config.host.as_deref())
        .put_str("port", config.port.as_deref())
        .put_str("path", config.path.as_deref())
        .put_str("query", config.query.as_deref())
        .put("status", status(&config.status_code));
    map.build()
}

/// `"503"` or `HTTP_301` as a number; anything else as written, for `check`.
fn status(code: &str) -> Node {
    let digits = code.trim().strip_prefix("HTTP_").unwrap_or(code.trim());
    match digits.parse() {
        Ok(number) => Node::Int(number),
        Err(_) => Node::str(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_group_names_come_from_the_arn() {
        assert_eq!(
            target_group_name(
                "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067"
            ),
            "my-targets"
        );
        assert_eq!(target_group_name("my-targets"), "my-targets");
    }

    #[test]
    fn statuses_lose_alb_prefix() {
        assert_eq!(status("HTTP_301"), Node::Int(301));
        assert_eq!(status("503"), Node::Int(503));
        assert_eq!(status("2XX"), Node::str("2XX"));
    }
}
