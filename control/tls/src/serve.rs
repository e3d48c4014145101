//! The TLS listener: accept, handshake, read the client's verified identity, serve HTTP/1.1
//! or HTTP/2 (by ALPN) with the given router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{Identity, ListenerLimits, identity_of};

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
    limits: ListenerLimits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let slots = limits.slots();
    let builder = Arc::new(limits.http_builder());
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
        let Some(slot) = slots.take() else {
            drop(tcp);
            continue;
        };
        // Watch streams write one small event at a time: with Nagle's algorithm an event
        // could wait for the ACK of the one before it.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::TlsConnector;

    use super::*;
    use crate::{ClientAuth, ClusterCa, Usage, client_config, server_config, server_identity};

    /// Reads until the server closes the connection (EOF or an error); how long that took.
    async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("the server kept the connection 10 s"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_request_head_and_connections_past_the_limit_are_closed() {
        crate::install_default_provider();
        let ca = ClusterCa::generate().unwrap();
        let cert = ca
            .issue(
                &server_identity(1),
                &["127.0.0.1".into()],
                Usage::ServerAndClient,
            )
            .unwrap();
        let tls = server_config(
            &cert.cert_pem,
            &cert.key_pem,
            ca.cert_pem(),
            ClientAuth::Optional,
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ListenerLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_millis(300),
        };
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(listener, tls, app, limits, shutdown));
        let connector = TlsConnector::from(Arc::new(client_config(ca.cert_pem(), None).unwrap()));
        let connect = || async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            connector.connect(name, tcp).await
        };

        // A request served, then the kept-alive connection idles: closed after the timeout.
        let mut idle = connect().await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        // Slowloris: half a head, then nothing.
        let mut slow = connect().await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        // Both slots are taken: a third connection is closed before its handshake ends.
        let third = tokio::time::timeout(Duration::from_secs(5), async {
            match connect().await {
                Err(_) => true,
                Ok(mut s) => closed_within(&mut s).await < Duration::from_millis(250),
            }
        })
        .await
        .unwrap();
        assert!(third, "a connection past the limit was served");
        let took = closed_within(&mut slow).await;
        assert!(took < Duration::from_secs(3), "{took:?}");
        closed_within(&mut idle).await;
        // The slots are free again.
        let mut again = connect().await.unwrap();
        again
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let n = again.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
}
