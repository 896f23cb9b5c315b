//! HTTP/2 streams whose client stopped reading. A client can close one
//! stream's flow-control window and keep the connection busy (pings, other
//! streams): hyper then stops polling that stream's response body, so
//! nothing on the stream's side runs any more, and the upstream connection
//! feeding it stays pinned. [`StreamExec`] is the executor hyper spawns
//! each HTTP/2 stream's task on: it wraps the task in [`Watched`], which
//! resets the stream (drops the task: RST_STREAM, and the upstream
//! connection with the body) once its response body has gone `send_timeout`
//! without being polled. HTTP/1 needs none of this: there the socket's own
//! blocked writes are timed (see `listener`).
//!
//! The body tells the watcher it was polled through a thread-local flag
//! set for the duration of the task's poll, so the two share no state and
//! a body polled outside a watched task pays one thread-local read.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// What the body reported during the current watched poll.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// No watched poll is running on this thread.
    Off,
    /// A watched poll is running; the body has not been polled in it.
    Nothing,
    /// The body was polled in it (it yielded a frame or waits for the
    /// upstream, whose silence `read_timeout` bounds).
    Body,
}

thread_local! {
    static SEEN: Cell<Seen> = const { Cell::new(Seen::Off) };
}

/// Called by the response body on every poll.
pub fn body_polled() {
    SEEN.with(|s| {
        if s.get() == Seen::Nothing {
            s.set(Seen::Body);
        }
    });
}

/// Spawns hyper's HTTP/2 stream tasks, each watched for `send_timeout`.
#[derive(Clone, Copy, Debug)]
pub struct StreamExec {
    pub send_timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // Boxed once here: a stream's future is the whole request's
        // (kilobytes), and tokio's spawn would otherwise move it by value
        // through several calls into its task.
        tokio::spawn(Watched {
            inner: Some(Box::pin(fut)),
            send_timeout: self.send_timeout,
            started: false,
            timer: None,
            armed: false,
        });
    }
}

pin_project_lite::pin_project! {
    /// One stream's task and the clock of its unread body.
    pub struct Watched<F> {
        inner: Option<Pin<Box<F>>>,
        send_timeout: Duration,
        // Whether the response body has been polled at all: before that
        // the task waits for the response head, which `timeout` bounds.
        started: bool,
        // Made the first time the body goes a poll without being asked.
        timer: Option<Pin<Box<Sleep>>>,
        armed: bool,
    }
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(());
        };
        let before = SEEN.with(|s| s.replace(Seen::Nothing));
        let r = inner.as_mut().poll(cx);
        let seen = SEEN.with(|s| s.replace(before));
        if r.is_ready() {
            return Poll::Ready(());
        }
        if seen == Seen::Body {
            *this.started = true;
            *this.armed = false;
            return Poll::Pending;
        }
        if !*this.started {
            return Poll::Pending;
        }
        let at = || Instant::now() + *this.send_timeout;
        let timer = match this.timer {
            Some(t) => {
                if !*this.armed {
                    t.as_mut().reset(at());
                }
                t
            }
            None => this.timer.insert(Box::pin(tokio::time::sleep_until(at()))),
        };
        *this.armed = true;
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::debug!(
            "resetting an HTTP/2 stream whose client read nothing for send_timeout ({:?})",
            this.send_timeout
        );
        // Dropping the task resets the stream and drops the response body
        // with its upstream connection.
        *this.inner = None;
        Poll::Ready(())
    }
}
