//! Validated identifiers: [`TenantId`], [`Slug`] and [`TenantRef`].
//!
//! Every value that comes from outside (a header, a host name, a path segment, a token claim, a CLI
//! argument) is parsed into one of these types at the edge. Parsing never panics, never allocates for
//! a slug, and never touches a store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The longest string [`TenantId::from_str`] looks at (a braced URN form is 45 bytes).
const MAX_ID_INPUT: usize = 45;

/// The longest slug: a DNS label is at most 63 bytes.
pub const SLUG_MAX_LEN: usize = 63;

/// Why a string is not a valid [`TenantId`] or [`Slug`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is not a UUID.
    #[error("not a tenant id: expected a UUID such as 0190d5a0-7c1e-7a2b-9c3d-4e5f60718293")]
    InvalidTenantId,
    /// The string is empty.
    #[error("not a slug: it is empty")]
    EmptySlug,
    /// The string is longer than 63 bytes.
    #[error("not a slug: {len} bytes, at most 63 are allowed")]
    SlugTooLong {
        /// Length of the rejected input in bytes.
        len: usize,
    },
    /// The string holds a byte outside `a-z`, `0-9` and `-`.
    #[error("not a slug: byte {index} is not one of a-z, 0-9 or '-'")]
    SlugInvalidChar {
        /// Byte offset of the first invalid byte.
        index: usize,
    },
    /// The string starts or ends with `-`.
    #[error("not a slug: it must not start or end with '-'")]
    SlugHyphenEdge,
}

/// The identity of a tenant: a UUID.
///
/// Generated ids are UUIDv7, so they sort by creation time (stable paging relies on it).
///
/// ```
/// use tenancy_core::TenantId;
///
/// let id: TenantId = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293".parse()?;
/// assert_eq!(id.to_string(), "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293");
/// assert!("acme".parse::<TenantId>().is_err());
/// # Ok::<(), tenancy_core::IdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    /// A new, time-ordered id (UUIDv7).
    #[must_use]
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    #[must_use]
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    #[must_use]
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 32 lowercase hex digits of the id, without hyphens (used to derive schema names).
    #[must_use]
    pub fn simple(&self) -> uuid::fmt::Simple {
        self.0.simple()
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for TenantId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_ID_INPUT {
            return Err(IdError::InvalidTenantId);
        }
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| IdError::InvalidTenantId)
    }
}

impl TryFrom<&[u8]> for TenantId {
    type Error = IdError;

    /// Parses the textual form from raw bytes (a header value, say); non-UTF-8 input is an error.
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        if bytes.len() > MAX_ID_INPUT {
            return Err(IdError::InvalidTenantId);
        }
        Uuid::try_parse_ascii(bytes)
            .map(Self)
            .map_err(|_| IdError::InvalidTenantId)
    }
}

impl From<Uuid> for TenantId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl From<TenantId> for Uuid {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0.hyphenated())
    }
}

/// A URL- and DNS-safe tenant name: lowercase `a-z`, `0-9` and `-`, 1 to 63 bytes, no leading or
/// trailing `-`. Every slug is a valid subdomain label.
///
/// A `Slug` is stored inline (no heap allocation) and is `Copy`.
///
/// ```
/// use tenancy_core::Slug;
///
/// let slug: Slug = "acme-corp".parse()?;
/// assert_eq!(slug.as_str(), "acme-corp");
/// assert!("Acme".parse::<Slug>().is_err());
/// assert!("-acme".parse::<Slug>().is_err());
/// # Ok::<(), tenancy_core::IdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug {
    len: u8,
    bytes: [u8; SLUG_MAX_LEN],
}

impl Slug {
    /// Parses and validates a slug from bytes.
    ///
    /// # Errors
    /// An [`IdError`] saying which rule the input breaks.
    pub fn from_bytes(input: &[u8]) -> Result<Self, IdError> {
        if input.is_empty() {
            return Err(IdError::EmptySlug);
        }
        if input.len() > SLUG_MAX_LEN {
            return Err(IdError::SlugTooLong { len: input.len() });
        }
        if let Some(index) = input
            .iter()
            .position(|b| !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        {
            return Err(IdError::SlugInvalidChar { index });
        }
        if input.first() == Some(&b'-') || input.last() == Some(&b'-') {
            return Err(IdError::SlugHyphenEdge);
        }
        let mut bytes = [0u8; SLUG_MAX_LEN];
        bytes[..input.len()].copy_from_slice(input);
        Ok(Self {
            // Checked above: at most 63.
            len: u8::try_from(input.len())
                .map_err(|_| IdError::SlugTooLong { len: input.len() })?,
            bytes,
        })
    }

    /// The slug as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this never falls back.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl FromStr for Slug {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(s.as_bytes())
    }
}

impl TryFrom<&str> for Slug {
    type Error = IdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::from_bytes(s.as_bytes())
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slug({:?})", self.as_str())
    }
}

impl Serialize for Slug {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Slug;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a slug (lowercase a-z, 0-9 and '-', 1 to 63 bytes)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Slug, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// A reference to a tenant as a resolver found it: by id or by slug.
///
/// ```
/// use tenancy_core::{Slug, TenantRef};
///
/// let by_slug = TenantRef::Slug("acme".parse::<Slug>()?);
/// assert_eq!(by_slug.to_string(), "slug:acme");
/// # Ok::<(), tenancy_core::IdError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantRef {
    /// By [`TenantId`].
    Id(TenantId),
    /// By [`Slug`].
    Slug(Slug),
}

impl From<TenantId> for TenantRef {
    fn from(id: TenantId) -> Self {
        Self::Id(id)
    }
}

impl From<Slug> for TenantRef {
    fn from(slug: Slug) -> Self {
        Self::Slug(slug)
    }
}

impl fmt::Display for TenantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "id:{id}"),
            Self::Slug(slug) => write!(f, "slug:{slug}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slug_rules() {
        for ok in ["a", "acme", "acme-corp", "a1", "0", &"a".repeat(63)] {
            assert_eq!(ok.parse::<Slug>().map(|s| s.to_string()), Ok(ok.to_owned()));
        }
        assert_eq!("".parse::<Slug>(), Err(IdError::EmptySlug));
        assert_eq!(
            "a".repeat(64).parse::<Slug>(),
            Err(IdError::SlugTooLong { len: 64 })
        );
        assert_eq!(
            "Acme".parse::<Slug>(),
            Err(IdError::SlugInvalidChar { index: 0 })
        );
        assert_eq!(
            "ac_me".parse::<Slug>(),
            Err(IdError::SlugInvalidChar { index: 2 })
        );
        assert_eq!(
            "acmé".parse::<Slug>(),
            Err(IdError::SlugInvalidChar { index: 3 })
        );
        assert_eq!(
            "a.b".parse::<Slug>(),
            Err(IdError::SlugInvalidChar { index: 1 })
        );
        assert_eq!("-acme".parse::<Slug>(), Err(IdError::SlugHyphenEdge));
        assert_eq!("acme-".parse::<Slug>(), Err(IdError::SlugHyphenEdge));
        assert_eq!("-".parse::<Slug>(), Err(IdError::SlugHyphenEdge));
    }

    #[test]
    fn tenant_id_parsing() {
        let id = TenantId::new();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.to_string().parse::<TenantId>(), Ok(id));
        assert_eq!(TenantId::try_from(id.to_string().as_bytes()), Ok(id));
        for bad in [
            "",
            "acme",
            "0190d5a0-7c1e-7a2b-9c3d-4e5f6071829",
            "{".repeat(10_000).as_str(),
        ] {
            assert_eq!(bad.parse::<TenantId>(), Err(IdError::InvalidTenantId));
        }
        assert!(TenantId::try_from(&b"\xff\xfe"[..]).is_err());
        assert!(TenantId::new() > id, "v7 ids sort by creation time");
    }

    #[test]
    fn serde_round_trip() {
        let slug: Slug = "acme".parse().unwrap();
        let json = serde_json::to_string(&TenantRef::Slug(slug)).unwrap();
        assert_eq!(json, r#"{"slug":"acme"}"#);
        assert_eq!(
            serde_json::from_str::<TenantRef>(&json).unwrap(),
            TenantRef::Slug(slug)
        );
        assert!(serde_json::from_str::<Slug>(r#""Not_A_Slug""#).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = s.parse::<TenantId>();
            let _ = s.parse::<Slug>();
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = TenantId::try_from(b.as_slice());
            if let Ok(slug) = Slug::from_bytes(&b) {
                prop_assert_eq!(slug.as_str().as_bytes(), b.as_slice());
            }
        }

        #[test]
        fn valid_slugs_round_trip(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            let slug: Slug = s.parse().unwrap();
            prop_assert_eq!(slug.as_str(), s.as_str());
            prop_assert_eq!(slug.to_string().parse::<Slug>().unwrap(), slug);
            let json = serde_json::to_string(&slug).unwrap();
            prop_assert_eq!(serde_json::from_str::<Slug>(&json).unwrap(), slug);
        }

        #[test]
        fn uuids_round_trip(bytes in any::<[u8; 16]>()) {
            let id = TenantId::from_uuid(Uuid::from_bytes(bytes));
            prop_assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        }
    }
}
