//! The server's side of the upgrade: reading the request, the policy it is
//! checked against, and the 101 or the HTTP refusal.
//!
//! Depends on [`crate::protocol`] and [`crate::net`]; never on
//! [`crate::client`] or [`crate::connection`].

pub mod handshake;
