//! Tenants' own host names: [`DomainName`], [`TenantDomain`], and [`normalize_host`], which turns a
//! request's `Host` into the form domains are stored in.
//!
//! A domain is stored in its ASCII form (UTS #46 ToASCII, by the `idna` crate): lower case,
//! internationalised labels as punycode (`münchen.example` is `xn--mnchen-3ya.example`), no port,
//! no trailing dot. Every label is letters, digits and inner hyphens, 1 to 63 bytes; the whole name
//! at most 253 bytes; at least two labels; and the last label is not all digits, so that an IP
//! address is never a domain.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::TenantId;

/// The longest domain name, in bytes of its ASCII form.
pub const DOMAIN_MAX_LEN: usize = 253;

/// Why a string is not a valid [`DomainName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The string is empty.
    #[error("not a domain name: it is empty")]
    Empty,
    /// The string is an IP address (`10.0.0.1`, `[::1]`).
    #[error("not a domain name: an IP address names no tenant")]
    IpAddress,
    /// The string has one label only (`localhost`).
    #[error("not a domain name: a tenant's domain has at least two labels, such as acme.com")]
    SingleLabel,
    /// A domain given to a tenant carries a port (`acme.com:8443`).
    #[error("not a domain name: a domain has no port")]
    Port,
    /// UTS #46 processing or the DNS rules refused it.
    #[error(
        "not a domain name: each label must be letters, digits or inner hyphens, 1 to 63 bytes, \
         and the whole at most 253 bytes"
    )]
    Invalid,
}

/// A host name a tenant owns, in its normalised ASCII form.
///
/// Parsing ([`FromStr`]) accepts what a user types: any case, internationalised labels, one
/// trailing dot. It refuses ports, IP addresses, single labels and anything UTS #46 or the DNS
/// length rules refuse.
///
/// ```
/// use tenancy_core::DomainName;
///
/// let domain: DomainName = "Portal.ACME.example.".parse()?;
/// assert_eq!(domain.as_str(), "portal.acme.example");
/// let idn: DomainName = "münchen.example".parse()?;
/// assert_eq!(idn.as_str(), "xn--mnchen-3ya.example");
/// assert_eq!(idn.to_unicode(), "münchen.example");
/// assert!("acme.com:443".parse::<DomainName>().is_err());
/// assert!("10.0.0.1".parse::<DomainName>().is_err());
/// assert!("localhost".parse::<DomainName>().is_err());
/// # Ok::<(), tenancy_core::DomainError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(Box<str>);

impl DomainName {
    /// The ASCII form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form to show people: punycode labels decoded (`xn--mnchen-3ya.example` is
    /// `münchen.example`).
    #[must_use]
    pub fn to_unicode(&self) -> String {
        idna::domain_to_unicode(&self.0).0
    }
}

impl FromStr for DomainName {
    type Err = DomainError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let input = input.trim();
        if has_port(input) {
            return Err(DomainError::Port);
        }
        normalize_host(input).map(|host| Self(host.into_owned().into_boxed_str()))
    }
}

impl TryFrom<&str> for DomainName {
    type Error = DomainError;

    fn try_from(input: &str) -> Result<Self, Self::Error> {
        input.parse()
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets caches keyed by `DomainName` be read with the `&str` [`normalize_host`] returns.
impl Borrow<str> for DomainName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName({:?})", &*self.0)
    }
}

impl Serialize for DomainName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `host` ends in `:<port>` (an IPv6 literal's colons are not a port).
fn has_port(host: &str) -> bool {
    host.rsplit_once(':')
        .is_some_and(|(name, _)| !name.contains(':'))
}

/// The normalised ASCII form of a request's host (a `Host` header or URI authority), as domains
/// are stored: port and one trailing dot removed, lower case, internationalised labels in punycode.
///
/// Borrows from `host` when it is already in that form (the usual case: no allocation). Refuses,
/// before any lookup, whatever is not a domain name: IP addresses, single labels, bad ports, and
/// what UTS #46 or the DNS length rules refuse.
///
/// # Errors
/// A [`DomainError`] saying which rule `host` breaks.
///
/// ```
/// use tenancy_core::normalize_host;
///
/// assert_eq!(normalize_host("ACME.com:8443").as_deref(), Ok("acme.com"));
/// assert_eq!(normalize_host("acme.com.").as_deref(), Ok("acme.com"));
/// assert!(normalize_host("[::1]:8080").is_err());
/// assert!(normalize_host("acme.com:https").is_err());
/// assert!(normalize_host("ac_me.com").is_err());
/// ```
pub fn normalize_host(host: &str) -> Result<Cow<'_, str>, DomainError> {
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(DomainError::IpAddress);
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return Err(DomainError::Port),
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(DomainError::Empty);
    }
    let ascii = match plain_ascii(name) {
        Some(checked) => Cow::Borrowed(checked?),
        None => to_ascii(name)?,
    };
    // `DnsLength::Verify` bounds labels and the whole name; these are the rules of a tenant's name.
    let Some((_, last)) = ascii.rsplit_once('.') else {
        return Err(DomainError::SingleLabel);
    };
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::IpAddress);
    }
    Ok(ascii)
}

/// UTS #46 ToASCII (the `idna` crate), with the STD3 rules (letters, digits, hyphens), no
/// hyphen first or last in a label, and the DNS lengths.
fn to_ascii(name: &str) -> Result<Cow<'_, str>, DomainError> {
    Uts46::new()
        .to_ascii(
            name.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .map_err(|_| DomainError::Invalid)
}

/// The request path's shortcut: a name of lower-case letters, digits, hyphens and dots with no
/// punycode label is its own ToASCII form, valid when its labels and length are (the answer
/// [`to_ascii`] gives, which a property test checks). `None` for anything else (upper case,
/// non-ASCII, `xn--` labels), which goes through [`to_ascii`].
fn plain_ascii(name: &str) -> Option<Result<&str, DomainError>> {
    let plain = name
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.'));
    if !plain || name.split('.').any(|label| label.starts_with("xn--")) {
        return None;
    }
    let valid = name.len() <= DOMAIN_MAX_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    Some(if valid {
        Ok(name)
    } else {
        Err(DomainError::Invalid)
    })
}

/// A domain and the tenant that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDomain {
    /// The domain.
    pub domain: DomainName,
    /// Its owner.
    pub tenant_id: TenantId,
    /// Whether it is the tenant's primary domain (exactly one of a tenant's domains is).
    pub primary: bool,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// What a change to a tenant's domains left: all its domains, and whether anything changed (adding
/// a domain the tenant already has changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainChange {
    /// The tenant's domains after the change, primary first, then by name.
    pub domains: Vec<TenantDomain>,
    /// Whether the store changed.
    pub changed: bool,
}

/// Orders a tenant's domains as stores return them: primary first, then by name.
pub fn sort_domains(domains: &mut [TenantDomain]) {
    domains.sort_by(|a, b| {
        b.primary
            .cmp(&a.primary)
            .then_with(|| a.domain.cmp(&b.domain))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hosts_normalise_or_are_refused() {
        for (input, expected) in [
            ("acme.com", "acme.com"),
            ("ACME.Com", "acme.com"),
            ("acme.com:80", "acme.com"),
            ("acme.com.", "acme.com"),
            ("acme.com.:443", "acme.com"),
            ("portal.acme.example", "portal.acme.example"),
            ("MÜNCHEN.example", "xn--mnchen-3ya.example"),
            ("xn--mnchen-3ya.example", "xn--mnchen-3ya.example"),
            ("a-b.co", "a-b.co"),
        ] {
            assert_eq!(normalize_host(input).as_deref(), Ok(expected), "{input}");
        }
        for (input, error) in [
            ("", DomainError::Empty),
            (".", DomainError::Empty),
            (":443", DomainError::Empty),
            ("localhost", DomainError::SingleLabel),
            ("localhost:3000", DomainError::SingleLabel),
            ("127.0.0.1", DomainError::IpAddress),
            ("127.0.0.1:80", DomainError::IpAddress),
            ("1.2.3.4.5", DomainError::IpAddress),
            ("[::1]", DomainError::IpAddress),
            ("[::1]:80", DomainError::IpAddress),
            ("::1", DomainError::IpAddress),
            ("acme.com:", DomainError::Port),
            ("acme.com:https", DomainError::Port),
            ("ac_me.com", DomainError::Invalid),
            ("-acme.com", DomainError::Invalid),
            ("acme-.com", DomainError::Invalid),
            ("acme..com", DomainError::Invalid),
            ("acme com", DomainError::Invalid),
            ("acme.com/x", DomainError::Invalid),
            ("xn--zz.example", DomainError::Invalid),
        ] {
            assert_eq!(normalize_host(input), Err(error.clone()), "{input:?}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(normalize_host(&long_label), Err(DomainError::Invalid));
        let long_name = format!("{}com", "abcdefghi.".repeat(25));
        assert_eq!(long_name.len(), 253);
        assert!(normalize_host(&long_name).is_ok());
        let too_long = format!("a{long_name}");
        assert_eq!(normalize_host(&too_long), Err(DomainError::Invalid));
    }

    #[test]
    fn normalised_hosts_are_borrowed() {
        assert!(matches!(
            normalize_host("acme.com:8080"),
            Ok(Cow::Borrowed("acme.com"))
        ));
    }

    #[test]
    fn domain_names_parse_what_people_type() {
        let domain: DomainName = "  Shop.Acme.COM. ".parse().unwrap();
        assert_eq!(domain.to_string(), "shop.acme.com");
        assert_eq!("acme.com:443".parse::<DomainName>(), Err(DomainError::Port));
        let json = serde_json::to_string(&domain).unwrap();
        assert_eq!(json, r#""shop.acme.com""#);
        assert_eq!(serde_json::from_str::<DomainName>(&json).unwrap(), domain);
        assert!(serde_json::from_str::<DomainName>(r#""not a domain""#).is_err());
    }

    #[test]
    fn domains_sort_primary_first() {
        let tenant_id = TenantId::new();
        let domain = |name: &str, primary| TenantDomain {
            domain: name.parse().unwrap(),
            tenant_id,
            primary,
            created_at: Utc::now(),
        };
        let mut domains = vec![
            domain("b.com", false),
            domain("c.com", true),
            domain("a.com", false),
        ];
        sort_domains(&mut domains);
        let names: Vec<_> = domains.iter().map(|d| d.domain.as_str()).collect();
        assert_eq!(names, ["c.com", "a.com", "b.com"]);
    }

    proptest! {
        #[test]
        fn the_shortcut_agrees_with_the_idna_crate(name in "[a-z0-9.-]{1,80}|[a-z0-9-]{60,66}\\.[a-z]{1,3}") {
            if let Some(shortcut) = plain_ascii(&name) {
                prop_assert_eq!(shortcut.map(Cow::Borrowed), to_ascii(&name));
            }
        }

        #[test]
        fn arbitrary_hosts_never_panic(s in any::<String>()) {
            if let Ok(host) = normalize_host(&s) {
                // What comes out is stable: normalising it again changes nothing.
                let again = normalize_host(&host);
                prop_assert_eq!(again.as_deref(), Ok(&*host));
                prop_assert!(host.len() <= DOMAIN_MAX_LEN);
            }
            let _ = s.parse::<DomainName>();
        }
    }
}
