//! Console sessions: opened by signing in with the admin token, identified by a random id in a
//! cookie, each with its own CSRF token; held in this process, bounded in number and lifetime.
//!
//! The one cookie is read and written by hand (a name, a random hex value, fixed attributes)
//! rather than with a cookie crate: there is nothing to encode, sign or parse beyond
//! `name=value` pairs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;
use serde::Deserialize;

use super::{Base, ConsoleState, unauthenticated};
use crate::auth::constant_time_eq;

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "tenancy_console";

/// The header a script may send the CSRF token in, instead of the form field `csrf`.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The largest form body the console reads.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// A signed-in session, as the handlers see it (in the request extensions).
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) id: Arc<str>,
    pub(crate) csrf: Arc<str>,
}

#[derive(Debug)]
struct Entry {
    csrf: Arc<str>,
    expires: Instant,
}

/// The open sessions.
#[derive(Debug)]
pub(crate) struct Sessions {
    entries: Mutex<HashMap<Arc<str>, Entry>>,
    lifetime: Duration,
    capacity: usize,
}

/// 32 random bytes as 64 hex digits.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Sessions {
    pub(crate) fn new(lifetime: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            lifetime,
            capacity: capacity.max(1),
        }
    }

    /// Opens a session; drops expired ones, and the one closest to expiry when full.
    pub(crate) fn open(&self) -> Session {
        let id: Arc<str> = Arc::from(random_hex());
        let csrf: Arc<str> = Arc::from(random_hex());
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, entry| entry.expires > now);
        if entries.len() >= self.capacity {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.expires)
                .map(|(id, _)| Arc::clone(id));
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            Arc::clone(&id),
            Entry {
                csrf: Arc::clone(&csrf),
                expires: now + self.lifetime,
            },
        );
        Session { id, csrf }
    }

    /// The live session `id` names.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (key, entry) = entries.get_key_value(id)?;
        if entry.expires <= Instant::now() {
            entries.remove(id);
            return None;
        }
        Some(Session {
            id: Arc::clone(key),
            csrf: Arc::clone(&entry.csrf),
        })
    }

    /// Ends the session `id`.
    pub(crate) fn close(&self, id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` header that opens (`Some(id)`) or clears (`None`) the session cookie.
pub(crate) fn set_cookie(
    base: &Base,
    session: Option<&str>,
    lifetime: Duration,
    secure: bool,
) -> (axum::http::HeaderName, HeaderValue) {
    let (value, max_age) = match session {
        Some(id) => (id, lifetime.as_secs()),
        None => ("", 0),
    };
    let mut cookie = format!(
        "{COOKIE_NAME}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict",
        base.cookie_path()
    );
    if secure {
        cookie.push_str("; Secure");
    }
    // The path comes from the route the console is nested at, which axum already matched: it
    // holds no control characters; should it, the cookie is left out (the sign-in then fails
    // visibly) rather than a header with a broken value.
    let value =
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"));
    (SET_COOKIE, value)
}

#[derive(Debug, Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// Middleware of every signed-in route: a live session (else the sign-in page or 401), and on
/// every `POST` its CSRF token, in the form field `csrf` or the `x-csrf-token` header (else 403).
pub(crate) async fn require_session(
    State(state): State<ConsoleState>,
    base: Base,
    request: Request,
    next: Next,
) -> Response {
    let fragment = request.headers().contains_key("x-console-fragment")
        || request.uri().path().ends_with("/events");
    let session = cookie(request.headers(), COOKIE_NAME).and_then(|id| state.sessions.get(id));
    let Some(session) = session else {
        return unauthenticated(request.method(), &base, fragment);
    };
    let mut request = request;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let header = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sent = match header {
            Some(token) => token,
            None => {
                let (parts, body) = request.into_parts();
                let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
                    return (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the form is too large for the console",
                    )
                        .into_response();
                };
                let probe = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
                let field = Form::<CsrfField>::from_request(probe, &())
                    .await
                    .map(|Form(field)| field.csrf)
                    .unwrap_or_default();
                request = Request::from_parts(parts, Body::from(bytes));
                field
            }
        };
        if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
            tracing::warn!(path = %request.uri().path(), "console: a form without its CSRF token");
            return (
                StatusCode::FORBIDDEN,
                "this form has no valid CSRF token: reload the page and try again",
            )
                .into_response();
        }
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_close_and_stay_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let a = sessions.open();
        assert_eq!(&*sessions.get(&a.id).unwrap().csrf, &*a.csrf);
        assert_ne!(a.id, a.csrf);
        let b = sessions.open();
        let c = sessions.open();
        // Full at two: the oldest went.
        assert!(sessions.get(&a.id).is_none());
        assert!(sessions.get(&b.id).is_some());
        sessions.close(&c.id);
        assert!(sessions.get(&c.id).is_none());
        assert!(sessions.get("not-a-session").is_none());

        let expired = Sessions::new(Duration::ZERO, 4);
        let d = expired.open();
        assert!(expired.get(&d.id).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; tenancy_console=abc"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, COOKIE_NAME), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_when_asked() {
        let base = Base("/console".into());
        let (_, value) = set_cookie(&base, Some("id"), Duration::from_secs(10), true);
        assert_eq!(
            value.to_str().unwrap(),
            "tenancy_console=id; Path=/console; Max-Age=10; HttpOnly; SameSite=Strict; Secure"
        );
        let (_, value) = set_cookie(&Base(String::new()), None, Duration::from_secs(10), false);
        assert_eq!(
            value.to_str().unwrap(),
            "tenancy_console=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }
}
