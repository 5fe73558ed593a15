//! Native core of the EV::Websockets Perl module.
//!
//! Everything but [`ffi`] and the boot forwarder is plain safe Rust with no
//! Perl or EV types: a WebSocket connection state machine over non-blocking
//! mio sockets that reports what it wants from the event loop, and is
//! tested with `cargo test` over real sockets.

#![deny(unsafe_code)]

pub mod client;
pub mod connection;
pub mod net;
pub mod options;
pub mod protocol;
pub mod pubsub;
pub mod server;
pub mod topics;

// The C ABI; the XS objects (and so the boot forwarder) are linked into
// the cdylib only: unit tests and fuzz targets run without a perl.
#[allow(unsafe_code)]
mod ffi;
