//! An option's value as the binding converted it, and the checks every
//! option of a kind shares (seconds, bytes, ports, file names).

use std::time::Duration;

/// An option's value, converted from Perl by its [`Shape`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Given as undef.
    Undef,
    /// `None`: not a number (a string that does not look like one).
    Number(Option<f64>),
    Text(&'a [u8]),
    Bool(bool),
    /// Names (empty values) or header pairs, in the order given.
    List(Vec<(String, Vec<u8>)>),
    /// A [`Shape::Choice`] that is not a hash: its string and its truth.
    Word(&'a [u8], bool),
}

/// Bounds of numeric options: far past any real use, and well inside what
/// the core's clocks and sizes hold.
const MAX_SECONDS: f64 = 1e9;
const MAX_BYTES: f64 = 9_007_199_254_740_992.0; // 2**53

impl Value<'_> {
    /// A number from `min` to `max`, or the message naming the option.
    pub(super) fn number_in(
        &self,
        name: &str,
        what: &str,
        min: f64,
        max: f64,
    ) -> Result<Option<f64>, String> {
        match *self {
            Value::Undef => Ok(None),
            Value::Number(Some(v)) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(format!("{name} must be {what} from {min} to {max}")),
        }
    }

    /// Seconds; `None` for undef and 0 (the default applies).
    pub(super) fn seconds(&self, name: &str) -> Result<Option<Duration>, String> {
        let secs = self.number_in(name, "a number of seconds", 0.0, MAX_SECONDS)?;
        Ok(secs.map(Duration::from_secs_f64).filter(|d| !d.is_zero()))
    }

    /// A size in bytes; `None` for undef.
    pub(super) fn bytes(&self, name: &str) -> Result<Option<usize>, String> {
        let n = self.number_in(name, "a number of bytes", 0.0, MAX_BYTES)?;
        // Truncation is intended: a fraction of a byte is not one.
        Ok(n.map(|n| usize::try_from(n as u64).unwrap_or(usize::MAX)))
    }

    /// A port number from `min`, or `message`.
    pub(super) fn port(
        &self,
        min: f64,
        message: impl FnOnce() -> String,
    ) -> Result<Option<u16>, String> {
        match self.number_in("", "", min, 65535.0) {
            Ok(port) => Ok(port.map(|p| p as u16)),
            Err(_) => Err(message()),
        }
    }

    pub(super) fn flag(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub(super) fn text(&self) -> Option<String> {
        match self {
            Value::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            _ => None,
        }
    }

    /// A file name; undef, "" and "0" are none (false, as the original
    /// took them).
    pub(super) fn file(&self, name: &str) -> Result<Option<String>, String> {
        match self.text().filter(|t| !t.is_empty() && t != "0") {
            Some(t) if t.contains('\0') => Err(format!("{name}: file name contains a NUL byte")),
            file => Ok(file),
        }
    }

    pub(super) fn list(self) -> Vec<(String, Vec<u8>)> {
        match self {
            Value::List(items) => items,
            _ => Vec::new(),
        }
    }

    /// A string that `listen` requires defined.
    pub(super) fn defined_text(&self, name: &str) -> Result<Option<String>, String> {
        match self {
            Value::Undef => Err(format!("listen: option '{name}' must be a defined string")),
            v => Ok(v.text()),
        }
    }
}
