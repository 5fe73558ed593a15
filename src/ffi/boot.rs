//! The exported boot symbol.
//!
//! rustc exports only Rust `#[no_mangle]` items from a cdylib, so the boot
//! function xsubpp generates is compiled under an internal name (see
//! build.rs) and this forwarder exports `boot_EV__Websockets`, the symbol
//! DynaLoader looks for.  Its signature follows perl's MULTIPLICITY.

use std::ffi::c_void;

unsafe extern "C" {
    fn ev_websockets_xs_boot(#[cfg(perl_multiplicity)] perl: *mut c_void, cv: *mut c_void);
}

/// # Safety
/// Called only by DynaLoader, with the arguments of an XS boot function.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn boot_EV__Websockets(
    #[cfg(perl_multiplicity)] perl: *mut c_void,
    cv: *mut c_void,
) {
    // SAFETY: the arguments are passed through unchanged to the function
    // xsubpp generated for exactly this call.
    unsafe {
        ev_websockets_xs_boot(
            #[cfg(perl_multiplicity)]
            perl,
            cv,
        )
    }
}
