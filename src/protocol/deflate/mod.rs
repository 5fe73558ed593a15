//! permessage-deflate (RFC 7692): negotiation, and the per-direction
//! compressor and inflater.

mod codec;
mod negotiate;

use crate::protocol::frame::Role;
pub use codec::{Compressor, Context, Decompressor, InflateError};

pub use negotiate::{
    CLIENT_OFFER, DEFAULT_MEM_LEVEL, DeflateParams, MAX_WINDOW_BITS, Memory, Offer, PRESETS,
    Settings, choose_offer, preset, read_answer,
};

/// Messages shorter than this go out uncompressed: deflate cannot shrink
/// them.
pub const MIN_COMPRESSED_SIZE: usize = 32;

impl DeflateParams {
    /// What a direction keeps between messages: nothing without context
    /// takeover; else its whole zlib stream at the default memory level or
    /// above, only its window below it.
    fn context(&self, no_context_takeover: bool) -> Context {
        match no_context_takeover {
            true => Context::None,
            false if self.mem_level >= DEFAULT_MEM_LEVEL => Context::Stream,
            false => Context::Window,
        }
    }

    /// The compressor for what `role` sends.
    pub fn compressor(&self, role: Role) -> Compressor {
        let (bits, reset) = match role {
            Role::Client => (self.client_max_window_bits, self.client_no_context_takeover),
            Role::Server => (self.server_max_window_bits, self.server_no_context_takeover),
        };
        Compressor::new(bits, self.mem_level, self.context(reset))
    }

    /// The inflater for what `role` receives.
    pub fn decompressor(&self, role: Role) -> Decompressor {
        let (bits, reset) = match role {
            Role::Client => (self.server_max_window_bits, self.server_no_context_takeover),
            Role::Server => (self.client_max_window_bits, self.client_no_context_takeover),
        };
        Decompressor::new(bits, self.context(reset))
    }
}
