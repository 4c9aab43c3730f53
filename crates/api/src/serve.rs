//! Serving the HTTP service on a listener: optional TLS (rustls), a deadline for a
//! client to send its request headers (and finish the TLS handshake), and graceful
//! shutdown with a bound.
//!
//! axum's own `serve` offers neither TLS nor a header timeout, and a slowloris client
//! (headers trickled one byte at a time) would hold a connection and a task forever; so
//! connections are accepted here and handed to hyper's HTTP/1 server with
//! `header_read_timeout`.

use crate::lenient::Lenient;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::App;

pub use citybrain_identity::tls::{server_config as tls_config, TlsError};

/// How connections are served.
#[derive(Clone)]
pub struct ServeOptions {
    /// TLS, when configured ([`tls_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Time a client has to complete the TLS handshake and to send each request's
    /// headers (also the most a kept-alive connection idles between requests).
    pub header_timeout: Duration,
    /// After shutdown is asked, how long open connections (a live feed, say) may take
    /// to finish before they are closed.
    pub drain: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            header_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(5),
        }
    }
}

/// Logs how a connection ended, when with an error (a client gone mid-request).
fn report(peer: std::net::SocketAddr, ended: Result<(), hyper::Error>) {
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open connections
/// finish for at most `opts.drain`.
pub async fn serve(
    listener: TcpListener,
    app: App,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let acceptor = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Header names go out as `Location`, not `location`: HTTP says case does not
    // matter, but clients that look a header up by its usual spelling exist (the ETSI
    // suite finds a registration's id that way).
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .title_case_headers(true)
        .keep_alive(true);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let http = http.clone();
        // The peer's address rides with every request of the connection (policies may
        // decide on it: `context.source`).
        let service = {
            let service = service.clone();
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                service.call(req)
            })
        };
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let handshake = opts.header_timeout;
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                let conn = http.serve_connection(TokioIo::new(Lenient::new(stream)), service);
                return report(peer, watcher.watch(conn).await);
            };
            let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let conn = http.serve_connection(TokioIo::new(Lenient::new(tls)), service);
            report(peer, watcher.watch(conn).await);
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            "connections still open after {:?} of shutdown were closed",
            opts.drain
        );
    }
    Ok(())
}
