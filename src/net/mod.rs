//! Bytes over a non-blocking socket: plain TCP or a TLS session, the TLS
//! configurations of both sides, and error texts of the OS and of TLS.
//!
//! Depends on [`crate::protocol`] only (the buffers it reads into and
//! writes from).

pub mod link;
pub mod os_error;
pub mod tls;
pub mod tls_error;
pub mod transport;
