//! Serving an axum app at the HTTP edge with limits: a header-read timeout, a request timeout, a
//! cap on open connections, and a deadline for the graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower_http::timeout::TimeoutLayer;

/// The limits of the HTTP edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeLimits {
    /// A connection that has not sent a whole request header within this is closed (a
    /// half-sent header holds nothing for longer). Default 10 s.
    pub header_read_timeout: Duration,
    /// A request that has not been answered within this gets 408. Default 30 s.
    pub request_timeout: Duration,
    /// Open connections at most; further ones wait in the listen queue until one closes.
    /// Default 1,024.
    pub max_connections: usize,
    /// After a stop, connections still open after this are closed. Default 10 s.
    pub shutdown_deadline: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` within `limits` until `stop` resolves, then stops accepting, lets
/// the open connections finish their requests until the shutdown deadline, and closes what is
/// left.
///
/// # Errors
/// Never for a client's misbehaviour; the error of a listener that fails for good.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        // Reap the finished connections' tasks as we go.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = connections.len();
    if tokio::time::timeout(limits.shutdown_deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open,
            deadline_ms = limits.shutdown_deadline.as_millis() as u64,
            "connections still open at the shutdown deadline are closed"
        );
    }
    connections.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

    /// Serves a router whose `/` answers "ok" and `/slow` answers after 5 s.
    async fn start(
        limits: ServeLimits,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let app = Router::new().route("/", get(|| async { "ok" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop, server)
    }

    /// Reads until the server closes the connection (bounded: 20 s), returning what it sent.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received))
            .await
            .expect("the server closed the connection")
            .ok();
        String::from_utf8_lossy(&received).into_owned()
    }

    /// Reads one response (its head and a short body).
    async fn read_response(stream: &mut TcpStream) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_half_sent_header_is_cut_off_and_a_slow_request_gets_408() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        };
        let (addr, stop, server) = start(limits).await;
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: te").await.unwrap();
        let sent = read_to_close(&mut half).await;
        assert!(!sent.contains("200 OK"), "{sent}");

        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let answer = read_response(&mut slow).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_for_one_to_close() {
        let limits = ServeLimits {
            max_connections: 1,
            ..ServeLimits::default()
        };
        let (addr, stop, server) = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(GET).await.unwrap();
        assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));
        // The first connection stays open (keep-alive): the second is not served meanwhile.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(GET).await.unwrap();
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
        assert!(early.is_err(), "served past the cap of one connection");
        drop(first);
        assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_shutdown_ends_at_its_deadline_despite_an_idle_connection() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_secs(3600),
            shutdown_deadline: Duration::from_millis(300),
            ..ServeLimits::default()
        };
        let (addr, stop, server) = start(limits).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: te").await.unwrap();
        // Let the server accept it before the stop.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the shutdown completed")
            .unwrap()
            .unwrap();
        let sent = read_to_close(&mut idle).await;
        assert!(!sent.contains("200 OK"), "{sent}");
    }
}
