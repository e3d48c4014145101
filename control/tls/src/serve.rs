//! The TLS listener: accept, handshake, read the client's verified identity, serve HTTP/1.1
//! or HTTP/2 (by ALPN) with the given router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{Identity, identity_of};

/// The identity of a client certificate verified against the cluster CA: a request
/// extension, present only when the client presented one. Handlers never read identity from
/// a header unless the connection is a server's (see the API server's authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(pub Identity);

/// A handshake that takes longer is dropped: a slow or silent client must not hold a task
/// and a socket forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` over TLS on `listener` until `shutdown` turns true; then stop accepting and
/// wait for open connections to finish (the caller bounds that wait: watches never end).
/// Requests carry [`PeerIdentity`] (when the client presented a certificate) and axum's
/// `ConnectInfo<SocketAddr>`.
///
/// # Errors
/// Never today; the result mirrors `axum::serve`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async {
                // The guard `wait_for` returns is not Send: drop it inside.
                let _ = shutdown.wait_for(|stop| *stop).await;
            } => break,
        };
        // Watch streams write one small event at a time: with Nagle's algorithm an event
        // could wait for the ACK of the one before it.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| identity_of(leaf))
                .map(PeerIdentity);
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                if let Some(p) = &peer {
                    req.extensions_mut().insert(p.clone());
                }
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                let mut app = app.clone();
                async move { tower::Service::call(&mut app, req).await }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
