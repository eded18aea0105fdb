//! The rules every configuration key and value must follow.

use serde_json::Value;
use tenancy_core::TenantError;

/// The longest configuration key, in bytes.
pub const KEY_MAX_LEN: usize = 128;
/// The default limit on a value's serialized JSON size, in bytes (64 KiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;

/// Why a configuration key or value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The key is empty.
    #[error("config key must not be empty")]
    EmptyKey,
    /// The key is longer than [`KEY_MAX_LEN`].
    #[error("config key {key:?} is {len} bytes long; at most 128 are allowed")]
    KeyTooLong {
        /// The key, cut to 128 bytes.
        key: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The key holds a character outside `a-z`, `0-9`, `_`, `.`, `-`.
    #[error("config key {key:?} may hold only a-z, 0-9, '_', '.' and '-'")]
    KeyCharacters {
        /// The key.
        key: String,
    },
    /// The value is JSON `null`.
    #[error("the value of config key {key:?} is null: remove the override instead")]
    NullValue {
        /// The key.
        key: String,
    },
    /// The value's serialized JSON is larger than allowed.
    #[error("the value of config key {key:?} is more than {max} bytes as JSON")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The bytes counted when counting stopped (more than `max`).
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl From<RuleError> for TenantError {
    fn from(error: RuleError) -> Self {
        TenantError::Configuration(error.to_string())
    }
}

/// Checks a key: 1 to 128 bytes of `a-z`, `0-9`, `_`, `.`, `-`.
///
/// ```
/// use tenancy_overrides::validate_key;
///
/// assert!(validate_key("billing.max_users").is_ok());
/// assert!(validate_key("Max Users").is_err());
/// assert!(validate_key("").is_err());
/// ```
///
/// # Errors
/// The [`RuleError`] naming what is wrong.
pub fn validate_key(key: &str) -> Result<(), RuleError> {
    if key.is_empty() {
        return Err(RuleError::EmptyKey);
    }
    if key.len() > KEY_MAX_LEN {
        let cut = (0..=KEY_MAX_LEN)
            .rev()
            .find(|&i| key.is_char_boundary(i))
            .unwrap_or(0);
        return Err(RuleError::KeyTooLong {
            key: key[..cut].to_owned(),
            len: key.len(),
        });
    }
    if !key
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
    {
        return Err(RuleError::KeyCharacters {
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// Checks a value of `key`: not `null`, and at most `max_bytes` bytes as JSON. The size is counted
/// while serializing, without allocating, and counting stops past the limit.
///
/// # Errors
/// [`RuleError::NullValue`] or [`RuleError::ValueTooLarge`].
pub fn validate_value(key: &str, value: &Value, max_bytes: usize) -> Result<(), RuleError> {
    if value.is_null() {
        return Err(RuleError::NullValue {
            key: key.to_owned(),
        });
    }
    let mut counter = Counter {
        count: 0,
        limit: max_bytes,
    };
    if serde_json::to_writer(&mut counter, value).is_err() || counter.count > max_bytes {
        return Err(RuleError::ValueTooLarge {
            key: key.to_owned(),
            size: counter.count,
            max: max_bytes,
        });
    }
    Ok(())
}

/// Counts bytes written, failing once past the limit so that a huge value is not walked whole.
struct Counter {
    count: usize,
    limit: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.count = self.count.saturating_add(buf.len());
        if self.count > self.limit {
            return Err(std::io::Error::other("value too large"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_the_rules() {
        for good in [
            "a",
            "max_users",
            "billing.plan-tier",
            "v2",
            &"k".repeat(128),
        ] {
            assert_eq!(validate_key(good), Ok(()), "{good}");
        }
        assert_eq!(validate_key(""), Err(RuleError::EmptyKey));
        assert!(matches!(
            validate_key(&"k".repeat(129)),
            Err(RuleError::KeyTooLong { len: 129, .. })
        ));
        for bad in ["Max", "max users", "max/users", "clé", "a\u{0}", "x:y"] {
            assert!(
                matches!(validate_key(bad), Err(RuleError::KeyCharacters { .. })),
                "{bad:?}"
            );
        }
        let long_multibyte = "é".repeat(100);
        let err = validate_key(&long_multibyte).unwrap_err();
        assert!(matches!(err, RuleError::KeyTooLong { len: 200, .. }));
        let message = TenantError::from(err).to_string();
        assert!(
            message.starts_with("invalid configuration: config key"),
            "{message}"
        );
    }

    #[test]
    fn values_are_bounded_by_their_json_size() {
        // "\"xxxx\"" is 6 bytes of JSON.
        assert_eq!(validate_value("k", &json!("xxxx"), 6), Ok(()));
        let err = validate_value("k", &json!("xxxxx"), 6).unwrap_err();
        assert!(
            matches!(err, RuleError::ValueTooLarge { size, max: 6, .. } if size > 6),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the value of config key \"k\" is more than 6 bytes as JSON"
        );
        assert_eq!(
            validate_value("k", &json!({"a": [1, 2, 3]}), 15),
            Ok(()),
            "{{\"a\":[1,2,3]}} is 13 bytes"
        );
        assert!(matches!(
            validate_value(
                "k",
                &Value::from(vec!["x"; 100_000]),
                DEFAULT_MAX_VALUE_BYTES
            ),
            Err(RuleError::ValueTooLarge { .. })
        ));
        assert_eq!(
            validate_value("k", &Value::Null, 10),
            Err(RuleError::NullValue { key: "k".into() })
        );
    }
}
