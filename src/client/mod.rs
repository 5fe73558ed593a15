//! The client's way to an open WebSocket: parsing the URL, resolving the
//! host, tunnelling through a proxy, and the upgrade request and its
//! answer.
//!
//! Depends on [`crate::protocol`] and [`crate::net`]; never on
//! [`crate::server`] or [`crate::connection`].

pub mod dial;
pub mod endpoint;
pub mod eyeballs;
pub mod handshake;
pub mod proxy;
pub mod resolver;
