//! Accepting connections (HTTP/1.1 and HTTP/2, in the clear or over TLS:
//! `tls.rs`) and shutting down gracefully:
//! on SIGTERM or Ctrl-C no new connections are taken and requests in
//! flight finish (up to 30 s).
//!
//! Slow and idle clients (`[http]` settings): at most `max_connections`
//! connections are served at once (more wait in the kernel's backlog); a
//! connection must complete a request head within `header_read_timeout`
//! of opening it, and on HTTP/1.1 within that long of its previous answer
//! (hyper's header timer, which also closes idle keep-alive connections);
//! heads are bounded by `max_header_bytes`. Request bodies are cut off when
//! idle by the server layer (`inbound.rs`).

use crate::config::Http;
use crate::http::Router;
use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus::IntGauge;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The connection builder for the `[http]` settings.
fn builder(cfg: &Http) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_secs))
        .max_buf_size(cfg.max_header_bytes);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        // dead peers are found by pings, not left holding a connection
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Raise the soft open-file limit to what `max_connections` needs (each
/// connection is a descriptor; blob files and RocksDB take more), as far
/// as the hard limit allows.
fn raise_fd_limit(max_connections: usize) {
    let want = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(1024);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let target: libc::rlim_t = want.min(lim.rlim_max);
        if target > lim.rlim_cur {
            lim.rlim_cur = target;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return;
            }
        }
    }
    if lim.rlim_cur < want {
        tracing::warn!(
            open_files = lim.rlim_cur,
            max_connections,
            "the open-file limit is below what http.max_connections needs; raise it (LimitNOFILE, ulimit -n)"
        );
    }
}

/// How long, and how many bytes, a closed connection is still read (and
/// the bytes dropped) before the socket is closed.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 << 20;

/// A client connection that closes gracefully ("lingering close", RFC 9112
/// 9.6): when the server is done with it — often after answering before
/// the request body was read, with `Connection: close` — the socket is
/// shut for writing and what the client still sends is read and dropped
/// for a moment before it is closed. Closing it with unread bytes at once
/// would make the kernel send a reset, which can destroy the answer before
/// the client has read it.
struct Linger(Option<tokio::net::TcpStream>);

impl Linger {
    fn io(&mut self) -> &mut tokio::net::TcpStream {
        self.0.as_mut().expect("taken only on drop")
    }
}

impl tokio::io::AsyncRead for Linger {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(self.io()).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Linger {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(self.io()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // Runs of mapped blob files go out with sendfile, from the page
        // cache to the socket; what comes before them is written first.
        #[cfg(target_os = "linux")]
        for (i, b) in bufs.iter().enumerate() {
            if let Some((fd, offset)) = berth_storage::mapped::file_range(b) {
                if i > 0 {
                    return std::pin::Pin::new(self.io()).poll_write_vectored(cx, &bufs[..i]);
                }
                return poll_sendfile(self.io(), cx, fd, offset, b.len());
            }
        }
        std::pin::Pin::new(self.io()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(self.io()).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(self.io()).poll_shutdown(cx)
    }
}

/// Send `len` bytes of the file `fd` from `offset` on the socket, as one
/// write: how many went.
#[cfg(target_os = "linux")]
fn poll_sendfile(
    io: &tokio::net::TcpStream,
    cx: &mut std::task::Context<'_>,
    fd: std::os::fd::RawFd,
    offset: u64,
    len: usize,
) -> std::task::Poll<std::io::Result<usize>> {
    use std::os::fd::AsRawFd;
    use std::task::Poll;
    let sock = io.as_raw_fd();
    loop {
        if let Err(e) = std::task::ready!(io.poll_write_ready(cx)) {
            return Poll::Ready(Err(e));
        }
        let sent = io.try_io(tokio::io::Interest::WRITABLE, || {
            let mut off = offset as libc::off_t;
            // SAFETY: both descriptors are open (the file's is kept open by
            // the mapping the caller's buffer borrows), and `off` is a
            // local the call may update.
            let n = unsafe { libc::sendfile(sock, fd, &mut off, len) };
            match n {
                n if n < 0 => Err(std::io::Error::last_os_error()),
                // the file is shorter than its mapping said: cut off
                0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => {
                    berth_storage::mapped::count_sent(n as usize);
                    Ok(n as usize)
                }
            }
        });
        match sent {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

impl Drop for Linger {
    fn drop(&mut self) {
        let Some(mut s) = self.0.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = s.shutdown().await;
            let deadline = tokio::time::Instant::now() + LINGER_TIME;
            let mut buf = vec![0u8; 64 << 10];
            let mut read = 0;
            while read < LINGER_BYTES {
                match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => read += n,
                    _ => break,
                }
            }
        });
    }
}

/// Decrements the open-connections gauge when the connection task ends.
struct Open(IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What every connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    router: Arc<Router>,
    /// A connection that has not completed a request head (and on TLS its
    /// handshake) this long after opening is dropped.
    first_request: Duration,
}

/// Serve one connection (plain or TLS) until it ends. On a `plain` one the
/// writer sends runs of mapped files itself (`Linger`).
async fn serve<I>(sh: &Shared, io: I, peer: String, graceful: Watcher, plain: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let router = sh.router.clone();
    let started = Arc::new(AtomicBool::new(false));
    let seen = started.clone();
    let svc = hyper::service::service_fn(move |req| {
        seen.store(true, Ordering::Relaxed);
        let (router, peer) = (router.clone(), peer.clone());
        async move { Ok::<_, std::convert::Infallible>(router.serve(req, peer, plain).await) }
    });
    let conn = sh
        .builder
        .serve_connection(TokioIo::new(io), svc)
        .into_owned();
    let mut conn = std::pin::pin!(graceful.watch(conn));
    // No request head within the timeout of connecting (hyper's own timer
    // starts only once it knows the protocol): drop.
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = tokio::time::sleep(sh.first_request) => None,
    };
    let r = match ended {
        Some(r) => r,
        None if !started.load(Ordering::Relaxed) => {
            tracing::debug!("no request within the header read timeout; closed");
            return;
        }
        None => conn.await,
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

pub async fn run(
    listen: SocketAddr,
    cfg: &Http,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Arc<Router>,
) -> anyhow::Result<()> {
    raise_fd_limit(cfg.max_connections);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "berth listening on {scheme}://{addr}");

    let shared = Arc::new(Shared {
        builder: builder(cfg),
        router,
        first_request: Duration::from_secs(cfg.header_read_timeout_secs),
    });
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut full_warned = false;
    loop {
        let full = slots.available_permits() == 0;
        if full && !full_warned {
            tracing::warn!(
                max_connections = cfg.max_connections,
                "connection limit reached; new connections wait (http.max_connections)"
            );
        }
        full_warned = full;
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gauge = shared.router.metrics.connections.clone();
                gauge.inc();
                let open = Open(gauge);
                let (sh, tls, watcher) = (shared.clone(), tls.clone(), graceful.watcher());
                let peer = peer.ip().to_string();
                tokio::spawn(async move {
                    let _held = (permit, open);
                    let io = Linger(Some(stream));
                    let Some(tls) = tls else {
                        return serve(&sh, io, peer, watcher, true).await;
                    };
                    match tokio::time::timeout(sh.first_request, tls.accept(io)).await {
                        Ok(Ok(io)) => serve(&sh, io, peer, watcher, false).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("no TLS handshake within the header read timeout; closed"),
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("gave up waiting for connections after 30s"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
