//! Words of webhooks: where events go (a [`WebhookUrl`] that is not a way into the
//! service's own network), the [`WebhookSecret`] they are signed with (Standard
//! Webhooks), and when a failed delivery is tried again ([`RetrySchedule`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::FieldError;

const SECRET_PREFIX: &str = "whsec_";
/// Random bytes of a generated secret (Standard Webhooks asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// The key deliveries are signed with, as the receiver is given it: `whsec_` and
/// the base64 of the key's bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", BASE64.encode(bytes)))
    }

    /// A secret as stored; `None` when it is not one this service makes.
    pub fn stored(text: &str) -> Option<Self> {
        let key = BASE64.decode(text.strip_prefix(SECRET_PREFIX)?).ok()?;
        (!key.is_empty()).then(|| Self(text.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Vec<u8> {
        BASE64.decode(&self.0[SECRET_PREFIX.len()..]).expect("checked when made")
    }

    /// `v1,` and the base64 of HMAC-SHA256 over `id.timestamp.body`.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key()).expect("HMAC takes a key of any length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: a signature by each secret in force, so that a
/// receiver still holding the secret before a rotation can check it for a while.
pub fn signature_header(secrets: &[&WebhookSecret], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|secret| secret.sign(message_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

labelled_enum! {
    /// How one attempt to deliver an event ended.
    pub enum DeliveryOutcome {
        /// The receiver answered 2xx.
        Delivered = "delivered",
        /// Any other answer, a timeout, or no connection; the event is tried again.
        Failed = "failed",
        /// The event was past its retention before it could be delivered: skipped.
        Expired = "expired",
    }
}

/// An `http(s)` address without credentials, as a receiver's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

/// Longest URL accepted.
const MAX_URL_LEN: usize = 2000;

impl WebhookUrl {
    /// Checks the form, and unless `allow_private`, that the host is not a literal
    /// address of a private network nor `localhost` (names are checked again
    /// whenever they are resolved, see [`is_public`]).
    pub fn parse(field: &str, text: &str, allow_private: bool) -> Result<Self, FieldError> {
        let text = text.trim();
        if text.len() > MAX_URL_LEN {
            return Err(FieldError::new(field, format!("must have at most {MAX_URL_LEN} characters")));
        }
        let url = url::Url::parse(text).map_err(|e| FieldError::new(field, format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FieldError::new(field, "must be an http:// or https:// URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError::new(field, "must not carry credentials; verify deliveries by their signature"));
        }
        if url.fragment().is_some() {
            return Err(FieldError::new(field, "must not have a #fragment"));
        }
        let parsed = Self(url);
        if !allow_private {
            match parsed.literal_address() {
                Some(address) if !is_public(address) => {
                    return Err(FieldError::new(field, private_refusal(&address.to_string())))
                }
                None if parsed.is_localhost() => return Err(FieldError::new(field, private_refusal("localhost"))),
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// The URL as stored earlier (checked when it was accepted).
    pub fn stored(text: &str) -> Option<Self> {
        url::Url::parse(text).ok().map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn host_name(&self) -> Option<&str> {
        self.0.host_str()
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(80)
    }

    /// The host, when it is written as an address rather than a name.
    pub fn literal_address(&self) -> Option<IpAddr> {
        match self.0.host()? {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        }
    }

    fn is_localhost(&self) -> bool {
        self.host_name().is_some_and(|host| {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        })
    }
}

/// Why an address is refused, for messages.
pub fn private_refusal(what: &str) -> String {
    format!("{what} is a loopback, private, link-local or otherwise internal address; webhooks go to public addresses only (WEBHOOK_ALLOW_PRIVATE=true lifts this, for tests and closed networks)")
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918,
/// unique local), link-local (cloud metadata lives there), shared (CGNAT),
/// unspecified, broadcast, multicast or reserved for documentation.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(v4) => is_public_v4(v4) && is_public_v6(v6),
            None => is_public_v6(v6),
        },
    }
}

/// The IPv4 address an IPv6 one carries, where it is written to reach it: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`, deprecated but still routed by some
/// stacks), translated (`::ffff:0:a.b.c.d`, RFC 2765) and 6to4 (`2002:AABB:CCDD::`).
/// Each is judged as its IPv4 address is.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, high, low] => Some(v4(high, low)),
        [0, 0, 0, 0, 0xffff, 0, high, low] => Some(v4(high, low)),
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, high, low] if (high, low) != (0, 0) && (high, low) != (0, 1) => Some(v4(high, low)),
        [0x2002, high, low, ..] => Some(v4(high, low)),
        _ => None,
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    !(v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && v6.segments()[1] == 0x0db8
        || first == 0x0064 && v6.segments()[1] == 0xff9b)
}

/// When a failed delivery is tried again: after `first`, doubling with each failure
/// up to an hour, each wait spread by ±25 % so that endpoints failing together do
/// not retry together; an endpoint failing for `give_up_after` is disabled.
#[derive(Debug, Clone, Copy)]
pub struct RetrySchedule {
    pub first: Duration,
    pub give_up_after: Duration,
}

const LONGEST_WAIT: Duration = Duration::from_secs(3600);

impl RetrySchedule {
    pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

    /// The wait after the `failures`-th failure in a row (1 for the first);
    /// `spread` in [0, 1) picks the jitter.
    pub fn wait_after(&self, failures: u32, spread: f64) -> Duration {
        let doubled = self.first.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(LONGEST_WAIT.max(self.first)).mul_f64(0.75 + spread.clamp(0.0, 1.0) / 2.0)
    }

    /// Whether an endpoint failing since `failing_for` is given up.
    pub fn gives_up(&self, failing_for: Duration) -> bool {
        failing_for >= self.give_up_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = WebhookSecret::stored("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_differ_and_read_back() {
        let a = WebhookSecret::generate();
        assert!(a.expose().starts_with("whsec_"));
        assert_ne!(a, WebhookSecret::generate());
        assert_eq!(WebhookSecret::stored(a.expose()), Some(a.clone()));
        assert_eq!(WebhookSecret::stored("whsec_"), None);
        assert_eq!(WebhookSecret::stored("cck_abc"), None);
    }

    #[test]
    fn two_secrets_sign_twice() {
        let (a, b) = (WebhookSecret::generate(), WebhookSecret::generate());
        let header = signature_header(&[&a, &b], "1", 2, b"{}");
        assert_eq!(header, format!("{} {}", a.sign("1", 2, b"{}"), b.sign("1", 2, b"{}")));
    }

    #[test]
    fn only_http_urls_without_credentials() {
        assert!(WebhookUrl::parse("url", "https://erp.example.com/hooks?x=1", false).is_ok());
        for bad in [
            "ftp://erp.example.com/",
            "erp.example.com/hooks",
            "https://user:pw@erp.example.com/",
            "https://erp.example.com/#a",
            "file:///etc/passwd",
        ] {
            assert!(WebhookUrl::parse("url", bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_hosts_are_refused_unless_allowed() {
        for internal in [
            "http://127.0.0.1:9000/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[::ffff:0:10.0.0.1]/",
            "http://[::169.254.169.254]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:c0a8:101::1]/",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://2130706433/",
        ] {
            let error = WebhookUrl::parse("url", internal, false).unwrap_err();
            assert!(error.message.contains("WEBHOOK_ALLOW_PRIVATE"), "{internal}: {}", error.message);
            assert!(WebhookUrl::parse("url", internal, true).is_ok(), "{internal} allowed");
        }
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
        assert!(is_public("::ffff:8.8.8.8".parse().unwrap()), "a public IPv4 address in IPv6 form stays public");
        assert!(is_public("2002:808:808::1".parse().unwrap()));
    }

    #[test]
    fn retries_double_up_to_an_hour_with_jitter() {
        let schedule = RetrySchedule { first: Duration::from_secs(5), give_up_after: RetrySchedule::GIVE_UP_AFTER };
        assert_eq!(schedule.wait_after(1, 0.5), Duration::from_secs(5));
        assert_eq!(schedule.wait_after(3, 0.5), Duration::from_secs(20));
        assert_eq!(schedule.wait_after(30, 0.5), Duration::from_secs(3600));
        assert_eq!(schedule.wait_after(1, 0.0), Duration::from_millis(3750));
        assert!(schedule.wait_after(1, 0.999) < Duration::from_millis(6250));
        assert!(!schedule.gives_up(Duration::from_secs(23 * 3600)));
        assert!(schedule.gives_up(Duration::from_secs(24 * 3600)));
    }
}
