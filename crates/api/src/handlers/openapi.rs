//! The API's own description: `GET /openapi.json` (OpenAPI 3.1, the platform API beyond
//! NGSI-LD; `crates/api/openapi.json`, embedded) and `GET /.well-known/api-catalog`
//! (RFC 9727), which points clients to it and to ETSI's description of the NGSI-LD API.
//!
//! Both are public (no data in them), as the console's files are. The catalogue's links
//! are relative references (RFC 9264 resolves them against the catalogue's own URL), so
//! that no `Host` header a client sends ends up in them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The OpenAPI document, as committed (`crates/api/openapi.json`).
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// Where ETSI publishes the OpenAPI description of the NGSI-LD API citybrain implements.
const NGSI_LD_OPENAPI: &str = "https://forge.etsi.org/rep/cim/NGSI-LD";

fn answer(body: String, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub async fn document() -> Response {
    answer(DOCUMENT.to_string(), "application/json")
}

/// RFC 9727's API catalogue: a linkset (RFC 9264) with one entry per API.
pub async fn catalog() -> Response {
    let body = serde_json::json!({
        "linkset": [
            {
                "anchor": "/platform/v1",
                "service-desc": [{"href": "/openapi.json", "type": "application/openapi+json"}],
                "status": [{"href": "/health", "type": "application/json"}]
            },
            {
                "anchor": "/ngsi-ld/v1",
                "service-doc": [{"href": NGSI_LD_OPENAPI, "type": "text/html"}],
                "status": [{"href": "/health", "type": "application/json"}]
            },
            {
                "anchor": "/open311/v2",
                "service-desc": [{"href": "/openapi.json", "type": "application/openapi+json"}],
                "service-doc": [{"href": "/open311/v2/discovery.json", "type": "application/json"}]
            }
        ]
    });
    answer(
        body.to_string(),
        "application/linkset+json; profile=\"https://www.rfc-editor.org/info/rfc9727\"",
    )
}
