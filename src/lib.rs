//! Native core of the EV::Websockets Perl module.
//!
//! Everything but [`ffi`] and the boot forwarder is plain safe Rust with no
//! Perl or EV types: a WebSocket connection state machine over non-blocking
//! mio sockets that reports what it wants from the event loop, and is
//! tested with `cargo test` over real sockets.

#![deny(unsafe_code)]

pub mod connection;
pub mod deflate;
pub mod endpoint;
pub mod frame;
pub mod handshake;
pub mod headers;
pub mod inbound;
pub mod listener;
pub mod options;
pub mod os_error;
pub mod outbound;
pub mod pool;
pub mod proxy;
pub mod resolver;
pub mod tls;
pub mod transport;
pub mod utf8;
pub mod wire;

// The C ABI; the XS objects (and so the boot forwarder) are linked into
// the cdylib only: unit tests and fuzz targets run without a perl.
#[allow(unsafe_code)]
mod ffi;
