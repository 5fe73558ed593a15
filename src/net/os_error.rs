//! Operating-system errors as short texts for `on_error` and croaks.

use std::io;

/// `Connection refused`, not `Connection refused (os error 111)`.
pub fn text(err: &io::Error) -> String {
    let full = err.to_string();
    match full.find(" (os error ") {
        Some(cut) => full[..cut].to_string(),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_the_errno() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(super::text(&e), "Connection refused");
    }
}
