//! The web console at `/` (its files from `citybrain-console`): public files with no
//! data in them; everything the console shows it reads through the public API, as the
//! user it runs for.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::problem::ApiError;

/// What a console page may load and call: only this server (no CDN, no external
/// tiles or fonts); MapLibre's workers start from `blob:` URLs and its canvas and
/// uPlot's legends set inline styles.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; worker-src 'self' blob:; child-src blob:; connect-src 'self'; \
font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub async fn file(uri: Uri, headers: HeaderMap) -> Response {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"))
        });
    let Some(a) = citybrain_console::asset(uri.path(), gzip) else {
        return ApiError::new(
            citybrain_model::ErrorKind::ResourceNotFound,
            "no such file in the console",
        )
        .into_response();
    };
    let mut r = (StatusCode::OK, a.body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if a.gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if a.immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}
