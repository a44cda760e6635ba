//! Request bodies as the APIs see them: counted, cut off when they go
//! idle, and handed back to the server when an API answers before reading
//! them to the end.
//!
//! An answer given before the body is read (a PATCH to an unknown upload,
//! a refused push) must not break the client's next request on the same
//! connection. HTTP/1.1 has no way to skip the unread rest except reading
//! it, so the server drains a short rest before answering and keeps the
//! connection; a long or stalled one is not read, and the answer says
//! `Connection: close` so the client opens a new connection instead of
//! writing into a closed one.

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus::IntCounter;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The most of an unread body drained to keep a connection.
pub const DRAIN_BYTES: u64 = 1 << 20;
/// How long draining may take.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// What is left of a request body once the API let go of it.
#[derive(Default)]
pub enum Rest {
    /// Read to its end (or there was none).
    #[default]
    Done,
    /// Unread bytes may follow on the connection.
    Unread(Counted),
    /// The body broke off (idle timeout): the connection cannot be reused.
    Broken,
}

/// Where an [`Inbound`] leaves what it did not read.
pub type RestSlot = Arc<Mutex<Rest>>;

/// The request body, its bytes counted into the server's received total.
type Counted = crate::http::Counted<Incoming>;

pub struct Inbound {
    inner: Option<Counted>,
    timeouts: IntCounter,
    idle: Duration,
    /// Armed at the first poll (an API may do other work first; a client
    /// that waits for `100 Continue` sends nothing before it).
    deadline: Option<Pin<Box<Sleep>>>,
    rest: RestSlot,
}

impl Inbound {
    pub fn new(
        inner: Incoming,
        idle: Duration,
        received: IntCounter,
        timeouts: IntCounter,
    ) -> (Inbound, RestSlot) {
        let rest = RestSlot::default();
        let b = Inbound {
            inner: Some(Counted::new(inner, received)),
            timeouts,
            idle,
            deadline: None,
            rest: rest.clone(),
        };
        (b, rest)
    }

    fn leave(&mut self, rest: Rest) {
        self.inner = None;
        *self.rest.lock().unwrap_or_else(|p| p.into_inner()) = rest;
    }

    fn unread_rest(&mut self) {
        if let Some(b) = self.inner.take() {
            if !b.is_end_stream() {
                self.leave(Rest::Unread(b));
            }
        }
    }
}

fn idle_error(idle: Duration) -> berth_http::BoxError {
    Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the request body sent nothing for {} s (http.body_idle_timeout_secs)",
            idle.as_secs()
        ),
    ))
}

impl http_body::Body for Inbound {
    type Data = Bytes;
    type Error = berth_http::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(s) = this.deadline.as_mut() {
                    s.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.leave(Rest::Broken);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.leave(Rest::Done);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = this.idle;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if deadline.as_mut().poll(cx).is_ready() {
                    this.timeouts.inc();
                    tracing::info!(secs = idle.as_secs(), "request body idle; abandoned");
                    this.leave(Rest::Broken);
                    return Poll::Ready(Some(Err(idle_error(idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        self.unread_rest();
    }
}

/// Read and discard `body` if its rest is at most [`DRAIN_BYTES`] and
/// arrives within [`DRAIN_TIME`]; whether it was read to its end.
pub async fn drain(mut body: impl http_body::Body<Data = Bytes> + Unpin) -> bool {
    if body.size_hint().lower() > DRAIN_BYTES {
        return false;
    }
    let read = async {
        let mut left = DRAIN_BYTES;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Some(d) = frame.data_ref() {
                match left.checked_sub(d.len() as u64) {
                    Some(l) => left = l,
                    None => return false,
                }
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}
