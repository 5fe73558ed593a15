//! The `compression` option: off, on, a preset name, or a hash of
//! settings, read into what permessage-deflate is configured with.

use super::Value;
use crate::protocol::deflate::{self, Memory, Settings};

/// What `compression` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    /// Not given (or undef).
    Default,
    Off,
    /// A true value: the defaults of each side.
    On,
    /// A preset or a hash; `label` names it in messages, and is `None`
    /// when a hash left context takeover to the default.
    Tuned {
        settings: Settings,
        label: Option<&'static str>,
    },
}

/// The `compression` hash's settings and their ranges.
const WINDOW_BITS: (f64, f64) = (9.0, 15.0);
const MEM_LEVEL: (f64, f64) = (1.0, 9.0);

impl Compression {
    pub(super) fn from_value(v: Value<'_>) -> Result<Compression, String> {
        match v {
            Value::Undef => Ok(Compression::Default),
            Value::Bool(truth) => Ok(if truth {
                Compression::On
            } else {
                Compression::Off
            }),
            Value::Word(text, truth) => {
                let text = String::from_utf8_lossy(text);
                if let Some(&(name, settings)) =
                    deflate::PRESETS.iter().find(|(name, _)| *name == text)
                {
                    Ok(Compression::Tuned {
                        settings,
                        label: Some(name),
                    })
                } else if text.is_empty() || text.trim().parse::<f64>().is_ok() {
                    // A plain truth, as Perl sees it.
                    Ok(if truth {
                        Compression::On
                    } else {
                        Compression::Off
                    })
                } else {
                    Err(format!("compression: unknown preset '{text}'"))
                }
            }
            Value::List(pairs) => Compression::from_hash(&pairs),
            Value::Number(_) | Value::Text(_) => Err("compression: not a setting".into()),
        }
    }

    fn from_hash(pairs: &[(String, Vec<u8>)]) -> Result<Compression, String> {
        let mut memory = Memory::default();
        let mut takeover = None;
        for (key, value) in pairs {
            let text = String::from_utf8_lossy(value);
            let number = || text.trim().parse::<f64>().ok().filter(|n| n.fract() == 0.0);
            let in_range = |(min, max): (f64, f64)| {
                number()
                    .filter(|n| (min..=max).contains(n))
                    .map(|n| n as u8)
                    .ok_or_else(|| format!("compression: {key} must be from {min} to {max}"))
            };
            match key.as_str() {
                "window_bits" => memory.window_bits = in_range(WINDOW_BITS)?,
                "mem_level" => memory.mem_level = in_range(MEM_LEVEL)?,
                "context_takeover" => {
                    takeover = Some(match text.as_ref() {
                        "" | "0" => false,
                        "1" => true,
                        _ => return Err("compression: context_takeover must be 0 or 1".into()),
                    })
                }
                other => {
                    let known = "window_bits, mem_level, context_takeover";
                    return Err(format!(
                        "compression: unknown setting '{other}' (known: {known})"
                    ));
                }
            }
        }
        Ok(Compression::Tuned {
            settings: Settings {
                memory,
                context_takeover: takeover.unwrap_or(true),
            },
            label: takeover.map(|t| {
                if t {
                    "{ context_takeover => 1 }"
                } else {
                    "{ context_takeover => 0 }"
                }
            }),
        })
    }
}
