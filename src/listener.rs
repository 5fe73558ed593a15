//! A listening socket that hands out server connections.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use crate::connection::{Connection, ServerSettings};

/// Pending connections the kernel queues for us.
const BACKLOG: i32 = 1024;

pub struct Listener {
    socket: mio::net::TcpListener,
    port: u16,
    settings: Arc<ServerSettings>,
}

impl Listener {
    /// Listen on every interface, IPv6 and IPv4 alike when the host has
    /// IPv6 (a dual-stack socket), IPv4 only otherwise.
    pub fn bind(port: u16, settings: ServerSettings) -> io::Result<Listener> {
        let socket = match bind_socket(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                bind_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)?
            }
            Err(e) => return Err(e),
        };
        let socket = mio::net::TcpListener::from_std(socket.into());
        let port = socket.local_addr()?.port();
        Ok(Listener {
            socket,
            port,
            settings: Arc::new(settings),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The next pending connection, `None` when there is none.
    pub fn accept(&self) -> io::Result<Option<Connection>> {
        loop {
            return match self.socket.accept() {
                Ok((stream, _)) => Ok(Some(Connection::accept(stream, Arc::clone(&self.settings)))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The peer gave up before we accepted: try the next one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => Err(e),
            };
        }
    }
}

fn bind_socket(addr: SocketAddr, dual_stack: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}
