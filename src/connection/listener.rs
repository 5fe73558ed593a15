//! A listening socket that hands out server connections.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Connection, ServerSettings};

/// Pending connections the kernel queues for us.
const BACKLOG: i32 = 1024;

pub struct Listener {
    socket: mio::net::TcpListener,
    port: u16,
    settings: Arc<ServerSettings>,
}

/// Where and how to listen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bind {
    /// One address to bind; `None`: every interface, dual-stack.
    pub host: Option<IpAddr>,
    pub port: u16,
    /// SO_REUSEPORT: several processes may listen on the port.
    pub reuse_port: bool,
}

impl Listener {
    /// Listen as `bind` says.  Without a host: every interface, IPv6 and
    /// IPv4 alike when the machine has IPv6 (a dual-stack socket), IPv4
    /// only otherwise.
    pub fn bind(bind: Bind, settings: ServerSettings) -> io::Result<Listener> {
        let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, bind.port));
        let socket = match bind.host {
            Some(ip) => bind_socket(SocketAddr::new(ip, bind.port), &bind)?,
            None => match bind_socket(any6, &bind) {
                Ok(s) => s,
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                    bind_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, bind.port)), &bind)?
                }
                Err(e) => return Err(e),
            },
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

fn bind_socket(addr: SocketAddr, bind: &Bind) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // The unspecified address serves IPv4 too; a specific one only itself.
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    socket.set_reuse_address(true)?;
    if bind.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}
