//! Decoding of NGSI-LD requests: tenant, `Link` context, media types, query parameters
//! and the JSON body (with size and depth limits).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, Method, StatusCode};
use citybrain_broker::RequestContext;
use citybrain_model::render::{Format, Projection, RenderOptions};
use citybrain_model::{ErrorKind, JsonLdContext};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::problem::{ApiError, ApiResult};
use crate::AppState;

pub const JSON_LD_CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// The representation a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    JsonLd,
    GeoJson,
}

impl Accept {
    pub fn content_type(self) -> &'static str {
        match self {
            Accept::Json => "application/json",
            Accept::JsonLd => "application/ld+json",
            Accept::GeoJson => "application/geo+json",
        }
    }
}

/// Every representation NGSI-LD offers, in its order of preference (6.3.4).
pub const ALL_REPRESENTATIONS: [Accept; 3] = [Accept::Json, Accept::JsonLd, Accept::GeoJson];

/// Which of all representations `Accept` selects ([`negotiate`] over
/// [`ALL_REPRESENTATIONS`]); `None` when it accepts none of them.
pub fn parse_accept(h: Option<&str>) -> Option<Accept> {
    negotiate(h, &ALL_REPRESENTATIONS)
}

/// Which of `offered` (the representations an endpoint has, in NGSI-LD's order of
/// preference) `Accept` selects, by RFC 9110 12.5.1: each representation takes the
/// weight of the most specific media range that matches it (the exact type, then
/// `application/*`, then `*/*`), so `application/json;q=0, */*` refuses JSON while
/// accepting the rest; a weight of 0 refuses; a weight that does not parse is not one of
/// the rules and leaves the range at 1; the highest weight wins and NGSI-LD's order
/// breaks ties (`application/ld+json, application/json` is JSON). No `Accept`, or an
/// empty one, takes the first offered. `None`: nothing offered is acceptable (406).
pub fn negotiate(h: Option<&str>, offered: &[Accept]) -> Option<Accept> {
    let Some(h) = h.filter(|h| !h.trim().is_empty()) else {
        return offered.first().copied();
    };
    let ranges: Vec<(String, f32)> = h
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let media = it.next()?.trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let mut q = 1.0f32;
            for p in it {
                let p = p.trim();
                if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    if let Ok(x) = v.trim().parse::<f32>() {
                        if (0.0..=1.0).contains(&x) {
                            q = x;
                        }
                    }
                }
            }
            Some((media, q))
        })
        .collect();
    let mut best: Option<(f32, Accept)> = None;
    for &a in offered {
        let exact = a.content_type();
        let mut weight: Option<(u8, f32)> = None;
        for (media, q) in &ranges {
            let specificity = match media.as_str() {
                m if m == exact => 2,
                "application/*" => 1,
                "*/*" => 0,
                _ => continue,
            };
            if weight.is_none_or(|(s, _)| specificity > s) {
                weight = Some((specificity, *q));
            }
        }
        if let Some((_, q)) = weight {
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, a));
            }
        }
    }
    best.map(|(_, a)| a)
}

/// A JSON object body as `T` (a struct): serde would also read a struct from an array
/// of its fields in order, which no client means, so anything but an object is refused.
pub(crate) fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => parse_body(body),
        _ => Err(ApiError::bad_data("body: a JSON object is expected")),
    }
}

/// A JSON body as `T`; an error names the path of the field at fault
/// (`body.slow[0].kmh: invalid type ...`).
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(".{path}")
        };
        ApiError::bad_data(format!("body{at}: {}", e.into_inner()))
    })?;
    // Nothing but whitespace may follow the value.
    de.end()
        .map_err(|e| ApiError::bad_data(format!("body: {e}")))?;
    Ok(v)
}

/// Extracts the JSON-LD context URL from `Link` headers.
pub fn parse_link(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let mut found = None;
    for v in headers.get_all(header::LINK) {
        let s = v
            .to_str()
            .map_err(|_| ApiError::bad_data("Link header is not valid text"))?;
        for link in s.split(',') {
            let link = link.trim();
            let Some(rest) = link.strip_prefix('<') else {
                continue;
            };
            let Some((url, params)) = rest.split_once('>') else {
                return Err(ApiError::bad_data("malformed Link header"));
            };
            let is_ctx = params.split(';').any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .is_some_and(|r| r.trim_matches('"') == JSON_LD_CONTEXT_REL)
            });
            if is_ctx {
                if found.is_some() {
                    return Err(ApiError::bad_data(
                        "more than one JSON-LD context Link header",
                    ));
                }
                if !citybrain_model::uri::is_absolute_uri(url) {
                    return Err(ApiError::bad_data(format!(
                        "Link context '{url}' is not an absolute URL"
                    )));
                }
                found = Some(url.to_string());
            }
        }
    }
    Ok(found)
}

/// Splits and decodes a query string (`+` is a space, as in every form-encoded query;
/// clients send a literal `+` as `%2B`); repeated keys keep the last value.
pub fn parse_query(raw: Option<&str>) -> ApiResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    let Some(raw) = raw else { return Ok(out) };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (k.replace('+', " "), v.replace('+', " "));
        let k = percent_decode_str(&k)
            .decode_utf8()
            .map_err(|_| ApiError::bad_data("query parameter name is not UTF-8"))?;
        let v = percent_decode_str(&v)
            .decode_utf8()
            .map_err(|_| ApiError::bad_data(format!("query parameter '{k}' is not UTF-8")))?;
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
}

/// Checks nesting depth of a JSON text without parsing it.
fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in bytes {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The `options` values of NGSI-LD 1.8/1.9 that some endpoint understands; each
/// endpoint still refuses those that mean nothing to it where it reads them.
const KNOWN_OPTIONS: &[&str] = &[
    "keyValues",
    "simplified",
    "sysAttrs",
    "concise",
    "normalized",
    "noOverwrite",
    "replace",
    "update",
    "temporalValues",
    "aggregatedValues",
];

/// A decoded NGSI-LD request.
pub struct NgsiRequest {
    pub rc: RequestContext,
    pub params: HashMap<String, String>,
    /// The `@context` source: the body's `@context` (JSON-LD) or the `Link` URL.
    pub context: Option<Value>,
    /// The body's JSON (an object's `@context` removed), when there is a body.
    pub body: Option<Value>,
    pub link: Option<String>,
    /// The body was sent as `application/ld+json`.
    pub is_ld: bool,
    /// The request's headers (distributed operations forward some of them).
    pub headers: axum::http::HeaderMap,
}

impl FromRequest<AppState> for NgsiRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let headers = &parts.headers;
        let rc = match parts.extensions.get::<RequestContext>() {
            Some(rc) => rc.clone(),
            None => crate::context::context_of(
                crate::context::Family::NgsiLd,
                headers,
                &parts.extensions,
            )?,
        };
        let params = parse_query(parts.uri.query())?;
        if let Some(route) = parts.extensions.get::<axum::extract::MatchedPath>() {
            if let Some(allowed) = crate::routes::allowed_params(&parts.method, route.as_str()) {
                if let Some(bad) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
                    return Err(ApiError::invalid(format!(
                        "unknown query parameter '{bad}'"
                    )));
                }
            }
        }
        // Every endpoint refuses an option no endpoint knows, as queries do (a write
        // once accepted `options=bogus` that a query refused).
        if let Some(opts) = params.get("options") {
            if let Some(bad) = opts
                .split(',')
                .map(str::trim)
                .find(|o| !o.is_empty() && !KNOWN_OPTIONS.contains(o))
            {
                return Err(ApiError::invalid(format!("unknown option '{bad}'")));
            }
        }
        let link = parse_link(headers)?;
        let has_body = matches!(parts.method, Method::POST | Method::PATCH | Method::PUT);
        let mut context = link.clone().map(Value::String);
        let mut parsed = None;
        let mut is_ld_body = false;
        if has_body {
            let bytes = axum::body::to_bytes(body, state.limits.max_body_bytes)
                .await
                .map_err(|_| {
                    ApiError::bad_data(format!(
                        "the body is larger than {} bytes",
                        state.limits.max_body_bytes
                    ))
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                })?;
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let media = ct
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let is_ld = match media.as_str() {
                "application/json" => false,
                "application/ld+json" => true,
                "application/merge-patch+json" if parts.method == Method::PATCH => false,
                "" if bytes.is_empty() => false,
                other => {
                    return Err(ApiError::invalid(format!("unsupported Content-Type '{other}'; use application/json or application/ld+json"))
                        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE))
                }
            };
            if bytes.is_empty() {
                return Err(ApiError::invalid("the request body is empty"));
            }
            if json_depth_exceeds(&bytes, state.limits.max_json_depth) {
                return Err(ApiError::invalid(format!(
                    "the JSON body nests deeper than {} levels",
                    state.limits.max_json_depth
                )));
            }
            let mut v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
            if is_ld && link.is_some() {
                return Err(ApiError::bad_data(
                    "a JSON-LD body carries its own @context; a context Link header is not allowed with it",
                ));
            }
            // Arrays (batches) keep each item's @context: the batch handlers apply the
            // media-type rules per item, so one bad item fails alone (207).
            if let Value::Object(m) = &mut v {
                match (is_ld, m.remove("@context")) {
                    (true, Some(c)) => context = Some(c),
                    (true, None) => {
                        return Err(ApiError::bad_data(
                            "application/ld+json bodies must carry an @context",
                        ))
                    }
                    (false, Some(_)) => {
                        return Err(ApiError::bad_data(
                            "application/json bodies must not carry an @context; use a Link header",
                        ))
                    }
                    (false, None) => {}
                }
            }
            is_ld_body = is_ld;
            parsed = Some(v);
        }
        Ok(NgsiRequest {
            rc,
            params,
            context,
            body: parsed,
            link,
            is_ld: is_ld_body,
            headers: parts.headers,
        })
    }
}

impl NgsiRequest {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }

    /// `limit` and `offset` of a list (subscriptions, context source subscriptions):
    /// non-negative integers, `limit` at most the broker's maximum.
    pub fn paging(&self, limits: &citybrain_broker::Limits) -> ApiResult<(usize, usize)> {
        let parse = |k: &str, d: usize| -> ApiResult<usize> {
            self.param(k)
                .map(|v| {
                    v.parse::<usize>().map_err(|_| {
                        ApiError::bad_data(format!("'{k}' must be a non-negative integer"))
                    })
                })
                .transpose()
                .map(|v| v.unwrap_or(d))
        };
        let limit = parse("limit", limits.default_limit)?;
        if limit > limits.max_limit {
            return Err(ApiError::new(
                citybrain_model::ErrorKind::TooManyResults,
                format!("'limit' is above the maximum {}", limits.max_limit),
            ));
        }
        Ok((limit, parse("offset", 0)?))
    }

    /// A `true`/`false` parameter (absent is false).
    pub fn bool_param(&self, k: &str) -> ApiResult<bool> {
        match self.param(k) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::bad_data(format!(
                "'{k}' must be true or false, got '{other}'"
            ))),
        }
    }

    /// The body as a JSON object.
    pub fn object(&self) -> ApiResult<Map<String, Value>> {
        match &self.body {
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(ApiError::invalid("the body must be a JSON object")),
            None => Err(ApiError::invalid("a body is required")),
        }
    }

    /// The body as a JSON array.
    pub fn array(&self) -> ApiResult<Vec<Value>> {
        match &self.body {
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(ApiError::bad_data("the body must be a JSON array")),
            None => Err(ApiError::invalid("a body is required")),
        }
    }

    fn accept_header(&self) -> Option<&str> {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
    }

    /// The accepted representation of entity retrievals and queries (JSON, JSON-LD or
    /// GeoJSON), or 406.
    pub fn accept(&self) -> ApiResult<Accept> {
        parse_accept(self.accept_header()).ok_or_else(|| {
            ApiError::new(ErrorKind::InvalidRequest, "none of the accepted media types is supported (application/json, application/ld+json, application/geo+json)")
                .with_status(StatusCode::NOT_ACCEPTABLE)
        })
    }

    /// The accepted representation where GeoJSON does not apply (everything but entity
    /// retrieval and queries), or 406.
    pub fn accept_json(&self) -> ApiResult<Accept> {
        negotiate(self.accept_header(), &[Accept::Json, Accept::JsonLd]).ok_or_else(|| {
            let detail = if parse_accept(self.accept_header()) == Some(Accept::GeoJson) {
                "GeoJSON is only offered for entities"
            } else {
                "none of the accepted media types is supported (application/json, application/ld+json)"
            };
            ApiError::new(ErrorKind::InvalidRequest, detail).with_status(StatusCode::NOT_ACCEPTABLE)
        })
    }

    fn options(&self) -> Vec<&str> {
        self.param("options")
            .map(|o| o.split(',').map(str::trim).collect())
            .unwrap_or_default()
    }

    /// True when `options` contains `opt`.
    pub fn has_option(&self, opt: &str) -> bool {
        self.options().contains(&opt)
    }

    /// `join` and `joinLevel`.
    pub fn join(&self) -> ApiResult<(crate::response::Join, usize)> {
        use crate::response::Join;
        Ok((
            Join::parse(self.param("join"))?,
            Join::parse_level(self.param("joinLevel"))?,
        ))
    }

    /// Rendering options from `options`, `format`, `attrs`/`pick`/`omit`, `lang`.
    pub fn render_options(&self, ld: &JsonLdContext) -> ApiResult<RenderOptions> {
        let opts = self.options();
        for o in &opts {
            if !matches!(
                *o,
                "keyValues"
                    | "simplified"
                    | "sysAttrs"
                    | "concise"
                    | "normalized"
                    | "noOverwrite"
                    | "replace"
                    | "update"
                    | ""
            ) {
                return Err(ApiError::invalid(format!("unknown option '{o}'")));
            }
        }
        let mut format = if opts.iter().any(|o| *o == "keyValues" || *o == "simplified") {
            Format::KeyValues
        } else if opts.contains(&"concise") {
            Format::Concise
        } else {
            Format::Normalized
        };
        if let Some(f) = self.param("format") {
            format = match f {
                "keyValues" | "simplified" => Format::KeyValues,
                "concise" => Format::Concise,
                "normalized" => Format::Normalized,
                other => return Err(ApiError::invalid(format!("unknown format '{other}'"))),
            };
        }
        self.projection_options(ld, format, opts.contains(&"sysAttrs"))
    }

    /// Options of the temporal API: the representation (`temporalValues`,
    /// `aggregatedValues`, normalized) and the projection.
    pub fn temporal_options(
        &self,
        ld: &JsonLdContext,
    ) -> ApiResult<(citybrain_broker::TemporalFormat, RenderOptions)> {
        use citybrain_broker::TemporalFormat;
        let opts = self.options();
        let mut format = TemporalFormat::Normalized;
        for o in &opts {
            format = match *o {
                "temporalValues" | "simplified" | "keyValues" => TemporalFormat::TemporalValues,
                "aggregatedValues" => TemporalFormat::Aggregated,
                "sysAttrs" | "normalized" | "" => format,
                other => return Err(ApiError::invalid(format!("unknown option '{other}'"))),
            };
        }
        if let Some(f) = self.param("format") {
            format = match f {
                "temporalValues" | "simplified" | "keyValues" => TemporalFormat::TemporalValues,
                "aggregatedValues" => TemporalFormat::Aggregated,
                "normalized" => TemporalFormat::Normalized,
                other => return Err(ApiError::invalid(format!("unknown format '{other}'"))),
            };
        }
        let render = self.projection_options(ld, Format::Normalized, opts.contains(&"sysAttrs"))?;
        Ok((format, render))
    }

    /// `attrs`, `pick`, `omit`, `lang` and `datasetId` as render options.
    fn projection_options(
        &self,
        ld: &JsonLdContext,
        format: Format,
        sys_attrs: bool,
    ) -> ApiResult<RenderOptions> {
        let list = |k: &str| -> ApiResult<Option<Vec<String>>> {
            self.param(k)
                .map(|s| citybrain_broker::query::split_list(k, s).map_err(ApiError::from))
                .transpose()
        };
        let attrs = list("attrs")?;
        let members = |k: &str| -> ApiResult<Option<Vec<citybrain_model::render::Member>>> {
            self.param(k)
                .map(|s| citybrain_model::render::parse_members(k, s).map_err(ApiError::from))
                .transpose()
        };
        let (pick, omit) = (members("pick")?, members("omit")?);
        if (pick.is_some() || omit.is_some()) && attrs.is_some() {
            return Err(ApiError::bad_data(
                "'attrs' cannot be combined with 'pick' or 'omit'",
            ));
        }
        let mut projection = Projection::from_pick_omit(pick.as_deref(), omit.as_deref(), ld)?;
        if let Some(attrs) = attrs {
            projection.attrs = Some(attrs.iter().map(|a| ld.expand(a)).collect());
        }
        Ok(RenderOptions {
            format,
            sys_attrs,
            projection,
            lang: self.param("lang").map(str::to_string),
            dataset_ids: list("datasetId")?.map(|d| citybrain_model::render::parse_dataset_ids(&d)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(parse_accept(None), Some(Accept::Json));
        assert_eq!(
            parse_accept(Some("application/ld+json")),
            Some(Accept::JsonLd)
        );
        assert_eq!(
            parse_accept(Some("text/html, application/json;q=0.5")),
            Some(Accept::Json)
        );
        assert_eq!(
            parse_accept(Some("application/json;q=0.5, application/ld+json")),
            Some(Accept::JsonLd)
        );
        assert_eq!(parse_accept(Some("*/*")), Some(Accept::Json));
        assert_eq!(parse_accept(Some("text/html")), None);
        assert_eq!(
            parse_accept(Some("application/geo+json")),
            Some(Accept::GeoJson)
        );
        // NGSI-LD 6.3.4 and RFC 9110 12.5.1, as the ETSI suite's 045 tests read them.
        let json_ld = [Accept::Json, Accept::JsonLd];
        for (header, offered, want) in [
            (
                "application/ld+json, application/json",
                &ALL_REPRESENTATIONS[..],
                Some(Accept::Json),
            ),
            (
                "application/geo+json, application/json",
                &ALL_REPRESENTATIONS[..],
                Some(Accept::Json),
            ),
            (
                "application/json;q=0.1, application/ld+json;q=0.9",
                &ALL_REPRESENTATIONS[..],
                Some(Accept::JsonLd),
            ),
            (
                "application/geo+json, application/json",
                &json_ld[..],
                Some(Accept::Json),
            ),
            (
                "application/geo+json;q=0.9, application/ld+json;q=0.1",
                &json_ld[..],
                Some(Accept::JsonLd),
            ),
            ("*/*", &json_ld[..], Some(Accept::Json)),
            (
                "application/json;q=0, application/ld+json",
                &json_ld[..],
                Some(Accept::JsonLd),
            ),
            (
                "application/json;q=0, */*",
                &ALL_REPRESENTATIONS[..],
                Some(Accept::JsonLd),
            ),
            (
                "*/*;q=0.9, application/ld+json;q=0.8",
                &ALL_REPRESENTATIONS[..],
                Some(Accept::Json),
            ),
            (
                "application/ld+json;q=notanumber",
                &ALL_REPRESENTATIONS[..],
                Some(Accept::JsonLd),
            ),
            ("application/geo+json", &json_ld[..], None),
            ("application/json;q=0", &json_ld[..], None),
        ] {
            assert_eq!(negotiate(Some(header), offered), want, "{header}");
        }
    }

    #[test]
    fn link_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::LINK, r#"<http://x/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#.parse().unwrap());
        assert_eq!(
            parse_link(&h).unwrap().as_deref(),
            Some("http://x/ctx.jsonld")
        );
        h.insert(
            header::LINK,
            r#"<http://x/other>; rel="next""#.parse().unwrap(),
        );
        assert_eq!(parse_link(&h).unwrap(), None);
    }

    #[test]
    fn query_strings_decode_plus_and_percent() {
        let q = parse_query(Some("scopeQ=/a/%2B/b&q=name%3D%3D%22x+y%22&count=true")).unwrap();
        assert_eq!(q["scopeQ"], "/a/+/b");
        assert_eq!(q["q"], "name==\"x y\"");
        assert_eq!(q["count"], "true");
    }

    #[test]
    fn depth_check() {
        assert!(!json_depth_exceeds(br#"{"a":[1,{"b":"[[[["}]}"#, 3));
        assert!(json_depth_exceeds(b"[[[[1]]]]", 3));
    }
}
