//! The TCP socket under a TLS connection, read with one system call per
//! burst of records instead of one per 4 KiB.
//!
//! rustls asks its transport for at most 4 KiB at a time (its buffer grows by
//! that much per read and has no setting), so a request with a 16 KiB session
//! cookie took five `recvfrom` calls. When a read fills what rustls asked
//! for, this one reads on into a scratch buffer shared by the thread's
//! connections and keeps what it got for rustls' next reads: two calls. A
//! read that does not fill rustls' buffer, as a small request's does not,
//! costs what it did. The kept bytes are freed once handed out, so a
//! connection between requests holds nothing here.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How much one read ahead may take: two full TLS records (16 KiB of
/// plaintext each, and their overhead).
const SCRATCH_LEN: usize = 33 * 1024;

thread_local! {
    /// Filled and emptied within one read, so one per thread serves every
    /// connection the thread runs.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

pub struct ReadAhead {
    socket: TcpStream,
    /// Bytes read from the socket past what the reader asked for, handed out
    /// before the socket is read again. Deallocated when all are handed out.
    ahead: Vec<u8>,
    /// How many bytes of `ahead` were handed out already.
    served: usize,
    /// An error met while reading ahead, for the read after `ahead`'s bytes.
    error: Option<io::Error>,
}

impl ReadAhead {
    pub fn new(socket: TcpStream) -> Self {
        Self {
            socket,
            ahead: Vec::new(),
            served: 0,
            error: None,
        }
    }

    /// Ready once bytes (or the end of the stream) can be read.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.served < self.ahead.len() || self.error.is_some() {
            return Poll::Ready(Ok(()));
        }
        self.socket.poll_read_ready(cx)
    }

    /// Bytes read ahead, then the error met reading ahead, if any.
    #[cold]
    fn hand_out(&mut self, buf: &mut ReadBuf<'_>) -> io::Result<()> {
        if self.served == self.ahead.len() {
            return self.error.take().map_or(Ok(()), Err);
        }
        let take = (self.ahead.len() - self.served).min(buf.remaining());
        buf.put_slice(&self.ahead[self.served..self.served + take]);
        self.served += take;
        if self.served == self.ahead.len() {
            self.ahead = Vec::new();
            self.served = 0;
        }
        Ok(())
    }

    /// After a read filled what the reader asked for, more is likely waiting
    /// (a record is up to 16 KiB): takes it now, in one call, rather than in
    /// a call per 4 KiB.
    #[cold]
    #[inline(never)]
    fn read_ahead(&mut self, cx: &mut Context<'_>) {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut more = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut self.socket).poll_read(cx, &mut more) {
                Poll::Ready(Ok(())) => self.ahead.extend_from_slice(more.filled()),
                // Reported by the read after the bytes already read.
                Poll::Ready(Err(error)) => self.error = Some(error),
                Poll::Pending => {}
            }
        });
    }
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.served < this.ahead.len() || this.error.is_some() {
            return Poll::Ready(this.hand_out(buf));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut this.socket).poll_read(cx, buf))?;
        if buf.remaining() == 0 {
            this.read_ahead(cx);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ReadAhead {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (ReadAhead, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let client = TcpStream::connect(listener.local_addr().expect("bound"))
            .await
            .expect("connect loopback");
        let (server, _) = listener.accept().await.expect("accept");
        (ReadAhead::new(server), client)
    }

    #[tokio::test]
    async fn one_read_takes_what_several_small_reads_hand_out_in_order() {
        let (mut ahead, mut client) = pair().await;
        let sent: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.expect("write");
        // Wait until all bytes are in the socket, so one readv can take them.
        while ahead.socket.peek(&mut [0; 12_000]).await.expect("peek") < sent.len() {
            tokio::task::yield_now().await;
        }

        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let n = ahead.read(&mut chunk).await.expect("first read");
        assert_eq!(n, 4096);
        got.extend_from_slice(&chunk[..n]);
        assert_eq!(
            ahead.ahead.len(),
            sent.len() - 4096,
            "the rest was read ahead"
        );
        while got.len() < sent.len() {
            let n = ahead.read(&mut chunk).await.expect("read");
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(ahead.ahead.capacity(), 0, "freed once handed out");
    }

    #[tokio::test]
    async fn readiness_counts_bytes_read_ahead_and_eof_still_ends_the_stream() {
        let (mut ahead, mut client) = pair().await;
        client.write_all(&[7; 6000]).await.expect("write");
        client.shutdown().await.expect("shutdown");
        let mut chunk = [0u8; 1000];
        let mut total = 0;
        loop {
            std::future::poll_fn(|cx| ahead.poll_read_ready(cx))
                .await
                .expect("ready");
            let n = ahead.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            assert!(chunk[..n].iter().all(|&b| b == 7));
            total += n;
        }
        assert_eq!(total, 6000);
    }

    #[tokio::test]
    async fn writes_go_to_the_socket() {
        let (mut ahead, mut client) = pair().await;
        ahead.write_all(b"hello").await.expect("write");
        ahead.flush().await.expect("flush");
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
    }
}
