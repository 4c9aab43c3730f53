//! The request timeout, on requests that carry a body only.
//!
//! A client that trickles a body (a slow upload) holds a task and a concurrency slot;
//! past `server.request_timeout_secs` it gets 408. Reads (GET, HEAD, DELETE, OPTIONS)
//! carry no body to trickle and are not wrapped: a timer per request cost about 10 %
//! of GET throughput, measured with `citybrain-bench` (docs/security.md).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_model::ErrorKind;

use crate::problem::ApiError;

/// Wraps every route of a router.
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeoutLayer(pub Duration);

impl<S> tower::Layer<S> for BodyTimeoutLayer {
    type Service = BodyTimeout<S>;
    fn layer(&self, inner: S) -> BodyTimeout<S> {
        BodyTimeout {
            inner,
            limit: self.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BodyTimeout<S> {
    inner: S,
    limit: Duration,
}

type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> tower::Service<Request> for BodyTimeout<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::Either<S::Future, Boxed>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
        ) {
            return futures::future::Either::Left(self.inner.call(req));
        }
        let limit = self.limit;
        let fut = self.inner.call(req);
        futures::future::Either::Right(Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(?limit, "a request ran past the request timeout");
                    Ok(ApiError::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "the request took longer than {} s (server.request_timeout_secs)",
                            limit.as_secs()
                        ),
                    )
                    .with_status(StatusCode::REQUEST_TIMEOUT)
                    .into_response())
                }
            }
        }))
    }
}
