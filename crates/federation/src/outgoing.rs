//! What every request to a context source carries, reads and writes alike: whether
//! the source may be asked now, its headers (`contextSourceInfo`, `Via`,
//! `NGSILD-Tenant`), the context it is told, its timeout; and how its outcome is
//! counted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Warning;
use crate::forward::{reserved_header, Incoming};
use crate::{Entry, Federation};

/// The parts of a request to one source that its registration decides.
pub(crate) struct Outgoing {
    /// `contextSourceInfo` headers, `Via`, `NGSILD-Tenant`.
    pub headers: HeaderMap,
    /// `contextSourceInfo` `accept`, when given.
    pub accept: Option<String>,
    /// The context the source is told (`None`: the core context): the client's
    /// `Link`, or the registration's `jsonldContext`.
    pub link: Option<String>,
    /// The source reads another context than the client wrote in (a registration's
    /// `jsonldContext`, or a context the client sent inline): names and types go as
    /// full IRIs, which read the same in any context.
    pub expand: bool,
    /// `contextSourceInfo` `contentType` is `application/ld+json`: a body carries its
    /// context inline.
    pub ld_body: bool,
    /// The registration's `management.timeout`, never more than the broker's.
    pub timeout: Duration,
}

impl Outgoing {
    /// The `Link` header naming [`Outgoing::link`].
    pub fn link_header(&self) -> Option<String> {
        self.link.as_ref().map(|l| {
            format!(
                "<{l}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
            )
        })
    }
}

/// A warning naming the source by its registration (its endpoint is for those who
/// may read registrations).
pub(crate) fn warning(e: &Entry, code: u16, text: String) -> Warning {
    Warning {
        code,
        agent: e.reg.id.clone(),
        text,
    }
}

impl Federation {
    /// How to send a request to the source, or why it is not sent: the egress policy
    /// refuses its endpoint (checked at every use: the policy may have changed since
    /// the registration was made, and a literal address is not resolved, so this is
    /// its only check), or it is cooling down after a failure.
    pub(crate) fn outgoing(&self, e: &Entry, inc: &Incoming) -> Result<Outgoing, Warning> {
        let reg = &e.reg;
        if let Err(err) = self.broker.egress.check_url(&reg.endpoint) {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return Err(warning(
                e,
                299,
                format!("the egress policy refuses the endpoint: {err}"),
            ));
        }
        if let (Some(cool), Some(failed)) = (reg.management.cooldown, e.status.lock().last_failure)
        {
            let until = failed + chrono::Duration::from_std(cool).unwrap_or_default();
            if self.broker.clock().now() < until {
                return Err(warning(
                    e,
                    199,
                    "not asked: cooling down after a failure".into(),
                ));
            }
        }
        let mut out = Outgoing {
            headers: HeaderMap::new(),
            accept: None,
            link: if inc.inline_context {
                None
            } else {
                inc.link.clone()
            },
            expand: false,
            ld_body: false,
            timeout: reg
                .management
                .timeout
                .map_or(self.settings.timeout, |t| t.min(self.settings.timeout)),
        };
        for (k, v) in &reg.source_info {
            let value = if v == "urn:ngsi-ld:request" {
                match inc.headers.get(k).and_then(|v| v.to_str().ok()) {
                    Some(v) => v.to_string(),
                    None => continue,
                }
            } else {
                v.clone()
            };
            match k.to_ascii_lowercase().as_str() {
                "jsonldcontext" => out.link = Some(value),
                "accept" => out.accept = Some(value),
                "contenttype" => out.ld_body = value.starts_with("application/ld+json"),
                _ if reserved_header(k) => {}
                _ => {
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) {
                        out.headers.append(n, v);
                    }
                }
            }
        }
        out.expand = inc.inline_context || out.link != inc.link;
        let alias = self.alias_for(&reg.tenant);
        let via = match &inc.via {
            Some(v) if !v.trim().is_empty() => format!("{v}, 1.1 {alias}"),
            _ => format!("1.1 {alias}"),
        };
        if let Ok(v) = HeaderValue::from_str(&via) {
            out.headers.insert("via", v);
        }
        if let Some(Ok(t)) = reg.remote_tenant.as_deref().map(HeaderValue::from_str) {
            out.headers.insert("ngsild-tenant", t);
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Counts a request's outcome in the registration's status (`timesSent`,
    /// `lastSuccess`, …) and the federation's counters.
    pub(crate) fn record(&self, e: &Entry, at: DateTime<Utc>, outcome: Result<(), &Warning>) {
        let mut st = e.status.lock();
        st.times_sent += 1;
        match outcome {
            Ok(()) => st.last_success = Some(at),
            Err(w) => {
                st.times_failed += 1;
                st.last_failure = Some(at);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(registration = %e.reg.id, endpoint = %e.reg.endpoint, code = w.code, reason = %w.text, "context source failed");
            }
        }
    }
}
