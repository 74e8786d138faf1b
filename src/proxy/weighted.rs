//! ALB's forward to several target groups: each request goes to one target
//! in proportion to the weights; with stickiness, the `AWSALBTG` cookie
//! keeps a browser on the target it was first given.
//!
//! The cookie names the rule, the target and when the stickiness ends, under
//! a MAC with a key derived from the session secrets (every replica with the
//! same secrets honours it; without secrets, a random key of this process).
//! A client cannot choose a target with it: a cookie whose MAC does not
//! verify, that has expired, or that names a target now of weight 0 or gone
//! from the rule is ignored, and the request is placed by the weights.

use std::time::Duration;

use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use url::Url;

use crate::auth::session::{RequestCookies, mac_key, set_cookie};
use crate::config::{ForwardAction, SessionKey, WeightedTarget};

/// ALB's name for its target-group stickiness cookie.
pub const STICKY_COOKIE: &str = "AWSALBTG";
/// Bytes of the MAC kept in the cookie.
const TAG_LEN: usize = 16;
const KEY_SALT: &[u8] = b"portcullis AWSALBTG";

/// Places requests on targets; one per process, shared by every listener.
pub struct Placement {
    key: hmac::Key,
}

/// Where one request goes, and the cookie that keeps it there.
pub struct Placed<'a> {
    pub target: &'a Url,
    /// A new stickiness cookie for the response.
    pub set_cookie: Option<HeaderValue>,
}

impl Placement {
    /// The MAC key, derived from the first session secret (so that replicas
    /// sharing secrets honour each other's cookies), or random.
    pub fn new(secrets: &[SessionKey]) -> Self {
        let mut random = [0u8; 32];
        let secret = match secrets.first() {
            Some(secret) => &secret.0,
            None => {
                aws_lc_rs::rand::fill(&mut random)
                    .expect("the system random source works, or nothing in TLS would either");
                &random
            }
        };
        Self {
            key: mac_key(KEY_SALT, secret),
        }
    }

    /// The target for a request to `rule`'s forward `action`: the sticky
    /// one its cookie names when that still holds, else one by the weights
    /// (`roll` gives a uniform `u32`, asked only when there is a choice)
    /// with a new cookie when the action is sticky. `now` in Unix seconds.
    pub fn place<'a>(
        &self,
        rule: &str,
        action: &'a ForwardAction,
        headers: &HeaderMap,
        secure: bool,
        now: u64,
        roll: impl FnOnce() -> u32,
    ) -> Placed<'a> {
        if let [only] = action.targets.as_slice() {
            return Placed {
                target: &only.target,
                set_cookie: None,
            };
        }
        let Some(duration) = action.stickiness else {
            return Placed {
                target: &by_weight(&action.targets, roll()).target,
                set_cookie: None,
            };
        };
        let cookies = RequestCookies::parse(headers);
        if let Some(target) = cookies
            .get(STICKY_COOKIE)
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| self.sticky(rule, &action.targets, value, now))
        {
            return Placed {
                target,
                set_cookie: None,
            };
        }
        let chosen = by_weight(&action.targets, roll());
        let index = action
            .targets
            .iter()
            .position(|target| std::ptr::eq(target, chosen))
            .expect("chosen from these targets");
        Placed {
            target: &chosen.target,
            set_cookie: Some(self.cookie(rule, index, chosen, now, duration, secure)),
        }
    }

    /// The target a cookie value names, if it verifies and still holds.
    fn sticky<'a>(
        &self,
        rule: &str,
        targets: &'a [WeightedTarget],
        value: &str,
        now: u64,
    ) -> Option<&'a Url> {
        let mut parts = value.splitn(3, '.');
        let (index, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let index: usize = index.parse().ok()?;
        let expires: u64 = expires.parse().ok()?;
        let target = targets.get(index)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let expected = self.tag(rule, index, &target.target, expires);
        constant_time::verify_slices_are_equal(&tag, &expected).ok()?;
        (now < expires && target.weight > 0).then_some(&target.target)
    }

    fn cookie(
        &self,
        rule: &str,
        index: usize,
        target: &WeightedTarget,
        now: u64,
        duration: Duration,
        secure: bool,
    ) -> HeaderValue {
        let expires = now.saturating_add(duration.as_secs());
        let tag = URL_SAFE_NO_PAD.encode(self.tag(rule, index, &target.target, expires));
        set_cookie(
            STICKY_COOKIE,
            &format!("{index}.{expires}.{tag}"),
            Some(duration),
            secure,
        )
    }

    /// The MAC over everything the cookie stands for.
    fn tag(&self, rule: &str, index: usize, target: &Url, expires: u64) -> [u8; TAG_LEN] {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [
            rule.as_bytes(),
            index.to_string().as_bytes(),
            target.as_str().as_bytes(),
            expires.to_string().as_bytes(),
        ] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let full = context.sign();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        tag
    }
}

/// The target `roll` lands on, each owning a share of `0..u32::MAX` in
/// proportion to its weight.
fn by_weight(targets: &[WeightedTarget], roll: u32) -> &WeightedTarget {
    let total: u64 = targets.iter().map(|target| u64::from(target.weight)).sum();
    let mut point = u64::from(roll) * total / (u64::from(u32::MAX) + 1);
    for target in targets {
        let weight = u64::from(target.weight);
        if point < weight {
            return target;
        }
        point -= weight;
    }
    // Unreachable while one weight is above 0 (validation sees to it).
    targets
        .iter()
        .find(|target| target.weight > 0)
        .unwrap_or(&targets[0])
}

/// A uniform roll for [`Placement::place`].
pub fn roll() -> u32 {
    let mut bytes = [0u8; 4];
    aws_lc_rs::rand::fill(&mut bytes)
        .expect("the system random source works, or nothing in TLS would either");
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(weights: &[u16], stickiness: Option<Duration>) -> ForwardAction {
        ForwardAction {
            targets: weights
                .iter()
                .enumerate()
                .map(|(index, &weight)| WeightedTarget {
                    target: format!("http://10.0.0.{index}:8080").parse().unwrap(),
                    weight,
                })
                .collect(),
            timeout: Duration::from_secs(60),
            stickiness,
        }
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("{STICKY_COOKIE}={value}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn rolls_land_in_proportion_to_the_weights() {
        let action = action(&[90, 10, 0], None);
        let mut counts = [0u32; 3];
        // Evenly spread rolls: the shares are exact.
        let steps = 10_000u64;
        for step in 0..steps {
            let roll = u32::try_from((step * (u64::from(u32::MAX) + 1)).div_ceil(steps)).unwrap();
            let target = by_weight(&action.targets, roll);
            let index = action.targets.iter().position(|t| t == target).unwrap();
            counts[index] += 1;
        }
        assert_eq!(counts, [9_000, 1_000, 0]);
        assert_eq!(by_weight(&action.targets, u32::MAX).weight, 10);
        assert_eq!(by_weight(&action.targets, 0).weight, 90);
    }

    #[test]
    fn a_sticky_cookie_keeps_its_target_and_a_forged_one_is_ignored() {
        let placement = Placement::new(&[SessionKey([1; 32])]);
        let action = action(&[50, 50], Some(Duration::from_secs(3600)));
        let none = HeaderMap::new();
        // A roll that lands on the second target.
        let first = placement.place("app", &action, &none, true, 1_000, || u32::MAX);
        assert_eq!(first.target, &action.targets[1].target);
        let cookie = first.set_cookie.expect("a new cookie");
        let cookie = cookie.to_str().unwrap();
        assert!(
            cookie.contains("Max-Age=3600") && cookie.contains("; Secure"),
            "{cookie}"
        );
        let value = cookie
            .strip_prefix("AWSALBTG=")
            .and_then(|rest| rest.split(';').next())
            .unwrap();
        // Any roll now: the cookie decides, and no new cookie is set.
        let again = placement.place("app", &action, &with_cookie(value), true, 2_000, || 0);
        assert_eq!(again.target, &action.targets[1].target);
        assert!(again.set_cookie.is_none());

        // Forged: another index under the same tag, a tag of another rule,
        // another key, an expired one, garbage. Each is placed by the roll.
        let forged_index = format!("0{}", &value[1..]);
        let other_rule = placement.place("other", &action, &none, true, 1_000, || u32::MAX);
        let other_rule = other_rule.set_cookie.unwrap();
        let other_rule = other_rule.to_str().unwrap()[9..]
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let other_key = Placement::new(&[SessionKey([2; 32])])
            .place("app", &action, &none, true, 1_000, || u32::MAX)
            .set_cookie
            .unwrap();
        let other_key = other_key.to_str().unwrap()[9..]
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        for forged in [
            forged_index.as_str(),
            other_rule.as_str(),
            other_key.as_str(),
            "1.99999999999.AAAA",
            "1",
            "",
            "x.y.z",
        ] {
            let placed = placement.place("app", &action, &with_cookie(forged), true, 2_000, || 0);
            assert_eq!(placed.target, &action.targets[0].target, "{forged}");
            assert!(placed.set_cookie.is_some(), "{forged}");
        }
        let expired = placement.place(
            "app",
            &action,
            &with_cookie(value),
            true,
            1_000 + 3_600,
            || 0,
        );
        assert_eq!(expired.target, &action.targets[0].target);

        // A target whose weight went to 0 keeps nobody.
        let drained = ForwardAction {
            targets: vec![
                action.targets[0].clone(),
                WeightedTarget {
                    weight: 0,
                    ..action.targets[1].clone()
                },
            ],
            ..action.clone()
        };
        let placed = placement.place("app", &drained, &with_cookie(value), true, 2_000, || {
            u32::MAX
        });
        assert_eq!(placed.target, &drained.targets[0].target);
    }

    #[test]
    fn one_target_needs_no_roll_and_no_cookie() {
        let placement = Placement::new(&[]);
        let action = action(&[1], Some(Duration::from_secs(60)));
        let placed = placement.place("app", &action, &HeaderMap::new(), false, 0, || 12345);
        assert_eq!(placed.target, &action.targets[0].target);
        assert!(placed.set_cookie.is_none());
    }
}
