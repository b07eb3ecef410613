//! Request bodies read to their end after an early answer. Many answers come before the body
//! is read: 429 from the byte budget or the concurrency limit, 401, 413, 503 while loading.
//! A client still sending its body then met a closed connection (broken pipe or reset, seen
//! by k6 in the soak) and lost the answer, its Retry-After included, and its keep-alive
//! connection with it. So a body dropped unread is read on in the background and thrown away,
//! chunk by chunk, never held: up to the largest body the server accepts, within a time
//! bound; past either the connection closes as before.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use futures_util::StreamExt;
use http_body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// How long an unread body may take to arrive in full before its connection is closed.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Wraps `request`'s body so that it is drained when dropped unread, up to `max_bytes`.
pub fn drain_when_dropped(request: Request, max_bytes: u64) -> Request {
    request.map(|body| Body::new(Draining::new(body, max_bytes)))
}

/// A request body that reads itself to the end, discarding, if dropped before its end.
struct Draining {
    /// Taken only when dropped.
    inner: Option<Body>,
    ended: bool,
    max_bytes: u64,
}

impl Draining {
    fn new(inner: Body, max_bytes: u64) -> Self {
        Draining {
            inner: Some(inner),
            ended: false,
            max_bytes,
        }
    }

    fn inner(&self) -> &Body {
        self.inner.as_ref().expect("the body is taken only on drop")
    }
}

impl http_body::Body for Draining {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let inner = self.inner.as_mut().expect("the body is taken only on drop");
        let polled = Pin::new(inner).poll_frame(cx);
        // An error ends the body too: the connection is gone or broken, nothing to drain.
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner().size_hint()
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.ended || body.is_end_stream() || body.size_hint().lower() > self.max_bytes {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let max_bytes = self.max_bytes;
        runtime.spawn(tokio::time::timeout(DRAIN_TIME, async move {
            let mut chunks = body.into_data_stream();
            let mut read = 0u64;
            while let Some(Ok(chunk)) = chunks.next().await {
                read += chunk.len() as u64;
                if read > max_bytes {
                    break;
                }
            }
        }));
    }
}
