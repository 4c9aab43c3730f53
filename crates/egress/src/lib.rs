//! Outbound requests, governed (server-side request forgery).
//!
//! citybrain fetches every `@context` URL and calls every notification endpoint that a
//! client names. Without a guard, an anonymous client could make the server fetch an
//! internal URL (`http://127.0.0.1:…/`, a cloud metadata service at
//! `169.254.169.254`) and read the answer back. An [`EgressPolicy`] says where
//! outbound requests may go:
//!
//! - **open** (the default when citybrain listens on loopback only, the two-command
//!   demo): everywhere;
//! - **strict** (the default as soon as it listens beyond loopback): public addresses
//!   only; loopback, private (RFC 1918, unique-local), link-local (metadata services
//!   included), carrier-grade NAT, unspecified, multicast and reserved addresses are
//!   refused unless allow-listed (`egress.allow`: CIDR blocks or host names).
//!
//! The check happens **after DNS resolution** inside the HTTP client (the connection
//! goes to the addresses that were checked, so a name that re-resolves to an internal
//! address between check and use gains nothing), on literal addresses before any
//! request, and again **on every redirect**. Clients built here ignore proxy
//! environment variables, which would bypass the check.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why an outbound request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("outbound request to {0} refused: {1} (allow it with egress.allow)")]
    Refused(String, &'static str),
    #[error("'{0}' is not a URL citybrain can call")]
    BadUrl(String),
    #[error("egress.allow: '{0}' is neither a CIDR block, an address nor a host name")]
    Config(String),
    #[error("the guarded HTTP client could not be built: {0}")]
    Client(String),
}

/// Where outbound requests may go.
#[derive(Debug, Default)]
pub struct EgressPolicy {
    /// Every destination allowed (loopback-only deployments).
    open: bool,
    nets: Vec<(IpAddr, u8)>,
    hosts: Vec<String>,
    /// Requests refused so far (`citybrain_egress_refused_total`).
    pub refused: AtomicU64,
}

pub mod metric {
    use citybrain_telemetry::MetricDef;
    pub static REFUSED: MetricDef = MetricDef::counter(
        "egress_refused",
        "Outbound requests (@context fetches, notifications) refused by the egress policy",
    );
}

impl citybrain_telemetry::Metrics for EgressPolicy {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        out(
            &metric::REFUSED,
            self.refused.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Why an address is not public, if it is not.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            // IPv4-mapped and -compatible forms are judged as the IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a unique-local (private) address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64: judged by the IPv4 address it embeds.
                let v4 =
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                non_public_v4(v4)
            } else if s[0] == 0x2001 && s[1] == 0xdb8 {
                Some("a documentation address")
            } else {
                None
            }
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address (cloud metadata services live there)")
    } else if o[0] == 0 {
        Some("the unspecified network")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("a carrier-grade NAT address")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("an IETF protocol address")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("a benchmarking address")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("a multicast or reserved address")
    } else if ip.is_documentation() {
        Some("a documentation address")
    } else {
        None
    }
}

fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, b.parse::<u8>().ok()?),
        None => (s, if s.contains(':') { 128 } else { 32 }),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_net(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl EgressPolicy {
    /// Every destination allowed.
    pub fn open() -> EgressPolicy {
        EgressPolicy {
            open: true,
            ..Default::default()
        }
    }

    /// Public destinations, and those of `allow` (CIDR blocks, addresses, host names).
    pub fn strict<S: AsRef<str>>(allow: &[S]) -> Result<EgressPolicy, EgressError> {
        let mut p = EgressPolicy::default();
        for a in allow {
            let a = a.as_ref().trim();
            if let Some(net) = parse_net(a) {
                p.nets.push(net);
            } else if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
            {
                p.hosts.push(a.to_ascii_lowercase());
            } else {
                return Err(EgressError::Config(a.to_string()));
            }
        }
        Ok(p)
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    fn refuse(&self, what: &str, why: &'static str) -> EgressError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(destination = what, reason = why, "outbound request refused");
        EgressError::Refused(what.to_string(), why)
    }

    /// Whether an address may be called.
    pub fn check_ip(&self, ip: IpAddr, what: &str) -> Result<(), EgressError> {
        if self.open || self.nets.iter().any(|n| in_net(ip, *n)) {
            return Ok(());
        }
        match non_public(ip) {
            Some(why) => Err(self.refuse(what, why)),
            None => Ok(()),
        }
    }

    fn host_listed(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&h)
    }

    /// Checks what can be checked of a URL without resolving it: its scheme, a literal
    /// address, and names that always mean this machine (`localhost`).
    pub fn check_url(&self, url: &str) -> Result<(), EgressError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| EgressError::BadUrl(url.into()))?;
        if !matches!(parsed.scheme(), "http" | "https" | "mqtt" | "mqtts") {
            return Err(EgressError::BadUrl(url.into()));
        }
        let Some(host) = parsed.host() else {
            return Err(EgressError::BadUrl(url.into()));
        };
        if self.open {
            return Ok(());
        }
        match host {
            url::Host::Ipv4(v4) => self.check_ip(IpAddr::V4(v4), url),
            url::Host::Ipv6(v6) => self.check_ip(IpAddr::V6(v6), url),
            url::Host::Domain(d) => {
                // Schemes the URL standard does not know (mqtt://) keep an address as
                // text.
                if let Ok(ip) = d
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                {
                    return self.check_ip(ip, url);
                }
                if self.host_listed(d) {
                    return Ok(());
                }
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    return Err(self.refuse(url, "a loopback address"));
                }
                Ok(())
            }
        }
    }

    /// Resolves `host` and keeps the addresses that may be called; an error when none
    /// may.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| EgressError::BadUrl(host.into()))?
            .collect();
        if self.open || self.host_listed(host) {
            return Ok(addrs);
        }
        let mut why = "no address";
        let ok: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match non_public(a.ip()) {
                None => true,
                Some(_) if self.nets.iter().any(|n| in_net(a.ip(), *n)) => true,
                Some(w) => {
                    why = w;
                    false
                }
            })
            .collect();
        if ok.is_empty() {
            return Err(self.refuse(host, why));
        }
        Ok(ok)
    }

    /// An HTTP client whose every connection and redirect passes the policy. An error
    /// when it cannot be built: never an unguarded client in its place.
    pub fn client(
        self: &Arc<Self>,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::Client, EgressError> {
        let for_redirects = self.clone();
        builder
            .no_proxy()
            .dns_resolver(Arc::new(Guarded(self.clone())))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                match for_redirects.check_url(attempt.url().as_str()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            }))
            .build()
            .map_err(|e| EgressError::Client(e.to_string()))
    }
}

/// The DNS resolver of guarded clients: resolves, then keeps only allowed addresses.
struct Guarded(Arc<EgressPolicy>);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str(), 0).await?;
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(non_public(a.parse().unwrap()).is_some(), "{a}");
        }
        for a in ["8.8.8.8", "120.55.1.1", "2400:3200::1"] {
            assert!(non_public(a.parse().unwrap()).is_none(), "{a}");
        }
    }

    #[test]
    fn strict_policies_refuse_literals_and_localhost_unless_listed() {
        let p = EgressPolicy::strict(&["10.9.0.0/16", "ctx.city.internal"]).unwrap();
        assert!(p.check_url("http://127.0.0.1:8080/creds.json").is_err());
        assert!(p
            .check_url("http://[::ffff:169.254.169.254]/latest")
            .is_err());
        assert!(p
            .check_url("http://169.254.169.254/latest/meta-data")
            .is_err());
        assert!(p.check_url("http://localhost:1026/x").is_err());
        assert!(p.check_url("http://10.9.1.1/ctx.jsonld").is_ok());
        assert!(p.check_url("http://10.8.1.1/ctx.jsonld").is_err());
        assert!(p.check_url("https://ctx.city.internal/c.jsonld").is_ok());
        assert!(p.check_url("https://example.org/c.jsonld").is_ok());
        assert!(matches!(
            p.check_url("file:///etc/passwd"),
            Err(EgressError::BadUrl(_))
        ));
        assert!(matches!(
            p.check_url("gopher://x/"),
            Err(EgressError::BadUrl(_))
        ));
        assert_eq!(p.refused.load(Ordering::Relaxed), 5);
        assert!(EgressPolicy::open().check_url("http://127.0.0.1/").is_ok());
        assert!(EgressPolicy::strict(&["not a net"]).is_err());
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let p = EgressPolicy::strict::<&str>(&[]).unwrap();
        assert!(p.resolve("localhost", 80).await.is_err());
        let listed = EgressPolicy::strict(&["127.0.0.0/8"]).unwrap();
        assert!(!listed.resolve("localhost", 80).await.unwrap().is_empty());
    }
}
