//! futures-timer 3.0.3 with one change: inside a Tokio runtime a [`Delay`] is a Tokio timer
//! (see README.md). Outside one it is upstream's implementation, unchanged (`native`).

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

// Upstream's code, kept as it is (its warnings with today's compiler included).
#[allow(deprecated, dead_code, unexpected_cfgs, clippy::all)]
mod native;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A future that completes at a point in time.
pub struct Delay(Inner);

enum Inner {
    Tokio(Pin<Box<tokio::time::Sleep>>),
    Native(native::Delay),
}

impl Delay {
    /// A future that completes `dur` from now. Inside a Tokio runtime it is a Tokio timer,
    /// so that runtime must have its timers enabled (as libp2p's Tokio transports and mDNS
    /// need anyway).
    #[inline]
    pub fn new(dur: Duration) -> Delay {
        if tokio::runtime::Handle::try_current().is_ok() {
            Delay(Inner::Tokio(Box::pin(tokio::time::sleep(dur))))
        } else {
            Delay(Inner::Native(native::Delay::new(dur)))
        }
    }

    /// Resets this timer to complete `dur` from now (even if it had completed).
    #[inline]
    pub fn reset(&mut self, dur: Duration) {
        match &mut self.0 {
            Inner::Tokio(s) => {
                let at = tokio::time::Instant::now() + dur;
                s.as_mut().reset(at)
            }
            Inner::Native(d) => d.reset(dur),
        }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Inner::Tokio(s) => s.as_mut().poll(cx),
            Inner::Native(d) => Pin::new(d).poll(cx),
        }
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        f.debug_struct("Delay").finish()
    }
}
