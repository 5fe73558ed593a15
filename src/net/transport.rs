//! Moving bytes between a socket and the connection's buffers, in the clear
//! or through a TLS session.

use std::io::{self, IoSlice, Write};

use mio::net::TcpStream;
use socket2::SockRef;

use crate::net::os_error;
use crate::net::tls_error::{self, Side};
use crate::protocol::inbound::InBuf;
use crate::protocol::outbound::{Flushed, Outbound};

/// What one readiness brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Plaintext was added to the buffer.
    Data,
    /// Nothing for the application (no bytes yet, or TLS records only).
    Nothing,
    /// The peer closed its side.
    Closed,
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// One read from the socket into `inbuf` (through `tls` when there is
/// one).  Errors come as the `on_error` text; a TLS failure while the
/// connection is `opening` is a failed handshake (with TLS 1.3 a server
/// may refuse a client certificate after the client's part is done).
pub fn receive(
    socket: &mut TcpStream,
    tls: Option<&mut rustls::Connection>,
    inbuf: &mut InBuf,
    want: usize,
    opening: bool,
) -> Result<Received, String> {
    let Some(tls) = tls else {
        return match inbuf.read_from(socket, want) {
            Ok(0) => Ok(Received::Closed),
            Ok(_) => Ok(Received::Data),
            Err(e) if transient(&e) => Ok(Received::Nothing),
            Err(e) => Err(format!("read failed: {}", os_error::text(&e))),
        };
    };
    let at_eof = match tls.read_tls(socket) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if transient(&e) => return Ok(Received::Nothing),
        Err(e) => return Err(format!("read failed: {}", os_error::text(&e))),
    };
    let handshaking = opening || tls.is_handshaking();
    if let Err(e) = tls.process_new_packets() {
        // Tell the peer (an alert) before giving up.
        let _ = flush_records(socket, tls);
        let what = if handshaking {
            "TLS handshake failed"
        } else {
            "TLS error"
        };
        return Err(format!("{what}: {}", tls_error::explain(&e, Side::of(tls))));
    }
    // The handshake may have something to say back.
    flush_records(socket, tls).map_err(|e| format!("write failed: {}", os_error::text(&e)))?;
    let mut got = false;
    loop {
        match inbuf.read_from(&mut tls.reader(), want) {
            Ok(0) => return Ok(Received::Closed), // close_notify
            Ok(_) => got = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Received::Closed),
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
    Ok(match (got, at_eof) {
        (true, _) => Received::Data,
        (false, true) => Received::Closed,
        (false, false) => Received::Nothing,
    })
}

/// Hand what `out` holds to the socket: one `write` in the clear.
/// Through TLS, the records the session still holds go first; once the
/// kernel has them all, as much plaintext as the session buffers is passed
/// on and its records written.  Plaintext goes to the session only while
/// it is empty, so what it holds is what `out` passed on last, which `out`
/// counts as queued until the records are written.  [`Flushed::All`]
/// means the session holds nothing either: everything queued reached the
/// kernel.
pub fn send(
    socket: &mut TcpStream,
    tls: Option<&mut rustls::Connection>,
    out: &mut Outbound,
) -> io::Result<Flushed> {
    let Some(tls) = tls else {
        return out.write_to(socket);
    };
    if !flush_records(socket, tls)? {
        return Ok(Flushed::Partial);
    }
    out.delivered();
    out.pass_to(&mut tls.writer())?;
    if !flush_records(socket, tls)? {
        return Ok(Flushed::Partial);
    }
    out.delivered();
    Ok(if out.is_empty() {
        Flushed::All
    } else {
        Flushed::Partial
    })
}

/// The socket as rustls writes records to it.  rustls writes vectored,
/// which for a plain stream is writev(2): to a peer that is gone that
/// raises SIGPIPE, and perl leaves SIGPIPE's default action (ending the
/// process) in place.  sendmsg(2) with MSG_NOSIGNAL gives EPIPE instead.
struct RecordSink<'a>(&'a TcpStream);

impl Write for RecordSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(self.0).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Write the TLS records waiting to go; false when the socket is full.
fn flush_records(socket: &mut TcpStream, tls: &mut rustls::Connection) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut RecordSink(socket)) {
            Ok(_) => {}
            Err(e) if transient(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    socket.flush()?;
    Ok(true)
}

/// Say goodbye at the TLS level (close_notify), best effort.
pub fn close_notify(socket: &mut TcpStream, tls: &mut rustls::Connection) {
    tls.send_close_notify();
    let _ = flush_records(socket, tls);
}
