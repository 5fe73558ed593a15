//! permessage-deflate (RFC 7692): negotiation, and the per-direction
//! compressor and inflater.

mod codec;
mod negotiate;

use crate::protocol::frame::Role;
pub use codec::{Compressor, Decompressor, InflateError};

pub use negotiate::{CLIENT_OFFER, DeflateParams, choose_offer, read_answer};

/// Messages shorter than this go out uncompressed: deflate cannot shrink
/// them.
pub const MIN_COMPRESSED_SIZE: usize = 32;

impl DeflateParams {
    /// The compressor for what `role` sends.
    pub fn compressor(&self, role: Role) -> Compressor {
        if role == Role::Client {
            Compressor::new(
                self.client_max_window_bits,
                !self.client_no_context_takeover,
            )
        } else {
            Compressor::new(
                self.server_max_window_bits,
                !self.server_no_context_takeover,
            )
        }
    }

    /// The inflater for what `role` receives.
    pub fn decompressor(&self, role: Role) -> Decompressor {
        if role == Role::Client {
            Decompressor::new(
                self.server_max_window_bits,
                !self.server_no_context_takeover,
            )
        } else {
            Decompressor::new(
                self.client_max_window_bits,
                !self.client_no_context_takeover,
            )
        }
    }
}
