// Copyright 2019 Parity Technologies (UK) Ltd.
//
// Permission is hereby granted, free of charge, to any person obtaining a
// copy of this software and associated documentation files (the "Software"),
// to deal in the Software without restriction, including without limitation
// the rights to use, copy, modify, merge, publish, distribute, sublicense,
// and/or sell copies of the Software, and to permit persons to whom the
// Software is furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in
// all copies or substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
// OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
// FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
// AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
// LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
// FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
// DEALINGS IN THE SOFTWARE.

//! Noise protocol I/O.

mod framed;
pub(crate) mod handshake;
use std::{
    cmp::min,
    fmt, io,
    pin::Pin,
    task::{Context, Poll},
};

use asynchronous_codec::Framed;
use bytes::{Bytes, BytesMut};
use framed::{Codec, MAX_FRAME_LEN};
use futures::{prelude::*, ready};

/// ptt-node patch: buffers larger than this are given back once traffic is light again.
pub(crate) const KEEP_BUFFER: usize = 8 * 1024;

/// A noise session to a remote.
///
/// `T` is the type of the underlying I/O resource.
pub struct Output<T> {
    // ptt-node patch: an `Option` so that `release_buffers` can take the `Framed` apart and
    // rebuild it with empty buffers. Always `Some` outside that function.
    io: Option<Framed<T, Codec<snow::TransportState>>>,
    recv_buffer: Bytes,
    recv_offset: usize,
    send_buffer: Vec<u8>,
    send_offset: usize,
    // ptt-node patch (see `release_buffers`): a large frame went either way since the buffers
    // were last released (`grown`) or since the last completed flush (`large_in_batch`), and
    // the bytes framed since the last completed flush.
    grown: bool,
    large_in_batch: bool,
    unflushed: usize,
}

impl<T> fmt::Debug for Output<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseOutput").finish()
    }
}

impl<T> Output<T> {
    fn new(io: Framed<T, Codec<snow::TransportState>>) -> Self {
        Output {
            io: Some(io),
            recv_buffer: Bytes::new(),
            recv_offset: 0,
            send_buffer: Vec::new(),
            send_offset: 0,
            grown: false,
            large_in_batch: false,
            unflushed: 0,
        }
    }
}

impl<T: Unpin> Output<T> {
    /// ptt-node patch: the `Framed` (see [`framed`]).
    fn io(&mut self) -> io::Result<Pin<&mut Framed<T, Codec<snow::TransportState>>>> {
        framed(&mut self.io)
    }
}

/// ptt-node patch: the `Framed` of an `Output`, or an error in the state `release_buffers` never
/// leaves. Takes the field, so that the caller may borrow the other fields meanwhile.
fn framed<T: Unpin>(
    io: &mut Option<Framed<T, Codec<snow::TransportState>>>,
) -> io::Result<Pin<&mut Framed<T, Codec<snow::TransportState>>>> {
    match io.as_mut() {
        Some(io) => Ok(Pin::new(io)),
        None => Err(io::Error::other("noise session lost its transport")),
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Output<T> {
    /// ptt-node patch. Called when a flush has completed: if a frame over `KEEP_BUFFER` went
    /// either way since the last release but none since the flush before this one (the burst
    /// is over, not paused for a window update or a ping), gives back the room the burst left in
    /// the send buffer, the encryption buffer and the codec's read and write buffers. Upstream
    /// keeps each at its largest for the life of the connection: after a burst of alerts, about
    /// 100 KiB per connection, 0.9 MiB for a daemon with nine peers (heaptrack). Buffers that
    /// still hold data are kept as they are. Empty ones are replaced whatever capacity they
    /// report (a consumed `BytesMut` can report less than the allocation behind it).
    fn release_buffers(&mut self) {
        let large_in_batch = std::mem::take(&mut self.large_in_batch);
        if !self.grown || large_in_batch || self.send_offset != 0 {
            return;
        }
        self.grown = false;
        self.send_buffer = Vec::new();
        let Some(io) = self.io.take() else {
            return;
        };
        let mut parts = io.into_parts();
        parts.codec.release_encrypt_buffer();
        if parts.write_buffer.is_empty() {
            parts.write_buffer = BytesMut::new();
        }
        if parts.read_buffer.is_empty() {
            parts.read_buffer = BytesMut::new();
        }
        self.io = Some(Framed::from_parts(parts));
    }

    /// Hands the buffered bytes to the codec as one frame (once `poll_ready` said yes).
    fn send_frame(&mut self) -> io::Result<()> {
        framed(&mut self.io)?.start_send(&self.send_buffer)?;
        // ptt-node patch: see `release_buffers`.
        self.unflushed = self.unflushed.saturating_add(self.send_offset);
        if self.send_offset > KEEP_BUFFER || self.unflushed > KEEP_BUFFER {
            self.grown = true;
            self.large_in_batch = true;
        }
        self.send_offset = 0;
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Output<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let len = self.recv_buffer.len();
            let off = self.recv_offset;
            if len > 0 {
                let n = min(len - off, buf.len());
                buf[..n].copy_from_slice(&self.recv_buffer[off..off + n]);
                tracing::trace!(copied_bytes=%(off + n), total_bytes=%len, "read: copied");
                self.recv_offset += n;
                if len == self.recv_offset {
                    tracing::trace!("read: frame consumed");
                    // Drop the existing view so `NoiseFramed` can reuse
                    // the buffer when polling for the next frame below.
                    self.recv_buffer = Bytes::new();
                }
                return Poll::Ready(Ok(n));
            }

            match self.io()?.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(0)),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(frame))) => {
                    // ptt-node patch: see `release_buffers`.
                    if frame.len() > KEEP_BUFFER {
                        self.grown = true;
                        self.large_in_batch = true;
                    }
                    self.recv_buffer = frame;
                    self.recv_offset = 0;
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Output<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = Pin::into_inner(self);

        // The MAX_FRAME_LEN is the maximum buffer size before a frame must be sent.
        if this.send_offset == MAX_FRAME_LEN {
            tracing::trace!(bytes=%MAX_FRAME_LEN, "write: sending");
            ready!(this.io()?.poll_ready(cx))?;
            this.send_frame()?;
        }

        let off = this.send_offset;
        let n = min(MAX_FRAME_LEN, off.saturating_add(buf.len()));
        this.send_buffer.resize(n, 0u8);
        let n = min(MAX_FRAME_LEN - off, buf.len());
        this.send_buffer[off..off + n].copy_from_slice(&buf[..n]);
        this.send_offset += n;
        tracing::trace!(bytes=%this.send_offset, "write: buffered");

        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = Pin::into_inner(self);

        // Check if there is still one more frame to send.
        if this.send_offset > 0 {
            ready!(this.io()?.poll_ready(cx))?;
            tracing::trace!(bytes= %this.send_offset, "flush: sending");
            this.send_frame()?;
        }

        ready!(this.io()?.poll_flush(cx))?;
        // ptt-node patch: see `release_buffers`.
        this.release_buffers();
        this.unflushed = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        self.io()?.poll_close(cx)
    }
}
