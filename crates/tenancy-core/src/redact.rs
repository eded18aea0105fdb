//! [`redact_url`]: connection URLs without their passwords, for logs, errors and `Debug` output.

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// The URL with its passwords replaced by [`REDACTED`]: the password of the user information (which
/// ends at the authority's last `@`, as URL parsers read it, so a password holding `@` stays hidden
/// whole) and a `password` query parameter (libpq and sqlx read one there too). SQLite URLs and
/// strings that are not URLs are returned as they are.
///
/// ```
/// use tenancy_core::redact_url;
///
/// assert_eq!(redact_url("postgres://app:s3cret@db/app"), "postgres://app:<redacted>@db/app");
/// assert_eq!(
///     redact_url("postgres://db/app?sslmode=require&password=s3cret"),
///     "postgres://db/app?sslmode=require&password=<redacted>"
/// );
/// assert_eq!(redact_url("sqlite://data/a@b.db"), "sqlite://data/a@b.db");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if scheme.eq_ignore_ascii_case("sqlite") {
        return url.to_owned();
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let mut out = match before_query[..authority_end].rfind('@') {
        Some(at) => match before_query[..at].split_once(':') {
            Some((user, _password)) => {
                format!("{scheme}://{user}:{REDACTED}{}", &before_query[at..])
            }
            None => format!("{scheme}://{before_query}"),
        },
        None => format!("{scheme}://{before_query}"),
    };
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive() {
        for (url, expected) in [
            (
                "postgres://u:pw@h:5432/db",
                "postgres://u:<redacted>@h:5432/db",
            ),
            (
                "postgres://u:p@ss@h:5432/db",
                "postgres://u:<redacted>@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?PASSWORD=s3cret",
                "postgres://h/db?PASSWORD=<redacted>",
            ),
            (
                "postgresql://u@h/db?sslmode=require&password=s3cret&x=1",
                "postgresql://u@h/db?sslmode=require&password=<redacted>&x=1",
            ),
            ("postgres://h/a@b", "postgres://h/a@b"),
            ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),
            ("not a url", "not a url"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }
}
