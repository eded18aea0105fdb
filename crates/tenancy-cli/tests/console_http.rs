//! The operator console over plain HTTP (no browser): what a forged or signed-out request gets,
//! and what reaches the HTML. The demo runs in-process on port 0 with a temporary SQLite file.

use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use serde_json::json;
use tenancy_cli::demo::{self, Demo, DemoOptions};

const ADMIN_TOKEN: &str = "console-http-test-admin-token";

struct Fixture {
    demo: Demo,
    http: Client,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut options = DemoOptions::new("127.0.0.1:0".parse().unwrap(), url);
    options.admin_token = Some(ADMIN_TOKEN.to_owned());
    let demo = demo::start(options).await.unwrap();
    let base = format!("http://{}", demo.addr());
    Fixture {
        demo,
        // Redirects are looked at, not followed.
        http: Client::builder().redirect(Policy::none()).build().unwrap(),
        base,
        _dir: dir,
    }
}

impl Fixture {
    /// Signs in: the session cookie, and the CSRF token of the tenants page.
    async fn sign_in(&self) -> (String, String) {
        let response = self
            .http
            .post(format!("{}/console/sign-in", self.base))
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set_cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
        assert!(set_cookie.contains("Path=/console"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let page = self.page("/console/tenants", &cookie).await;
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        (cookie, csrf)
    }

    async fn page(&self, path: &str, cookie: &str) -> String {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.unwrap()
    }
}

#[tokio::test]
async fn signed_out_requests_get_nothing_and_wrong_tokens_open_no_session() {
    let f = start().await;
    let globex = f.demo.tenant("globex").unwrap().id;
    // A page: to the sign-in form.
    let response = f
        .http
        .get(format!("{}/console/tenants", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/console/sign-in");
    // An action or the event stream: 401, and nothing changed.
    for path in [
        format!("/console/tenants/{globex}/suspend"),
        "/console/events".to_owned(),
    ] {
        let response = f
            .http
            .post(format!("{}{path}", f.base))
            .header("cookie", "tenancy_console=forged")
            .form(&[("confirmed", "yes")])
            .send()
            .await
            .unwrap();
        assert!(
            response.status() == StatusCode::UNAUTHORIZED
                || response.status() == StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {}",
            response.status()
        );
    }
    let events = f
        .http
        .get(format!("{}/console/events", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::UNAUTHORIZED);
    // A wrong token: 401 and no cookie.
    let response = f
        .http
        .post(format!("{}/console/sign-in", f.base))
        .form(&[("token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("set-cookie").is_none());
    let tenant = f
        .demo
        .tenancy()
        .lifecycle()
        .get(globex)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.status.as_str(), "active");
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_action_needs_the_sessions_csrf_token() {
    let f = start().await;
    let globex = f.demo.tenant("globex").unwrap().id;
    let (cookie, csrf) = f.sign_in().await;
    let suspend = format!("{}/console/tenants/{globex}/suspend", f.base);
    for form in [
        vec![("confirmed", "yes")],
        vec![("confirmed", "yes"), ("csrf", "forged")],
    ] {
        let response = f
            .http
            .post(&suspend)
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    // Another session's token is no better.
    let (_, other_csrf) = f.sign_in().await;
    let response = f
        .http
        .post(&suspend)
        .header("cookie", &cookie)
        .form(&[("confirmed", "yes"), ("csrf", &other_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let tenant = f
        .demo
        .tenancy()
        .lifecycle()
        .get(globex)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.status.as_str(), "active");
    // With it (in the header, as a script would send it), the action runs.
    let response = f
        .http
        .post(&suspend)
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .form(&[("confirmed", "yes"), ("reason", "unpaid")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let tenant = f
        .demo
        .tenancy()
        .lifecycle()
        .get(globex)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.status.as_str(), "suspended");
    // Signed out, the cookie opens nothing.
    let response = f
        .http
        .post(format!("{}/console/sign-out", f.base))
        .header("cookie", &cookie)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = f
        .http
        .get(format!("{}/console/tenants", f.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/console/sign-in");
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn what_tenants_set_is_escaped_and_pages_forbid_foreign_script() {
    let f = start().await;
    let name = "<script>alert(1)</script>\"'&";
    let created: serde_json::Value = f
        .http
        .post(format!("{}/admin/tenants", f.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "slug": "evil", "name": name }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let suspended = f
        .http
        .post(format!("{}/admin/tenants/evil/suspend", f.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "reason": "<img src=x onerror=alert(2)>" }))
        .send()
        .await
        .unwrap();
    assert_eq!(suspended.status(), StatusCode::OK);
    let put = f
        .http
        .put(format!("{}/admin/tenants/evil/config/theme", f.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!("</script><script>alert(3)</script>"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let (cookie, _) = f.sign_in().await;
    for path in [
        "/console/tenants".to_owned(),
        format!("/console/tenants/{id}"),
    ] {
        let response = f
            .http
            .get(format!("{}{path}", f.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"),
            "{path}"
        );
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(!html.contains("<img"), "{path}");
        assert!(!html.contains("</script><script>"), "{path}");
        // The only script element is the console's own.
        assert_eq!(html.matches("<script").count(), 1, "{path}");
    }
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_list_pages_through_the_store_and_searches_past_the_first_page() {
    let f = start().await;
    // 30 more tenants: more than a page (25).
    for i in 0..30 {
        let response = f
            .http
            .post(format!("{}/admin/tenants", f.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "slug": format!("t{i:02}"), "name": format!("Tenant {i:02}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let (cookie, _) = f.sign_in().await;
    let rows = |html: &str| html.matches("<tr data-slug=").count();
    let first = f.page("/console/tenants", &cookie).await;
    assert_eq!(rows(&first), 25);
    let next = first
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|href| href.contains("after="))
        .unwrap()
        .replace("&amp;", "&");
    let second = f.page(&next, &cookie).await;
    // 3 seeded + 30 = 33: 8 on the second page, and no third.
    assert_eq!(rows(&second), 8);
    assert!(!second.contains("rel=\"next\""));
    // The search reads past the first page of the store.
    let found = f.page("/console/tenants?q=tenant+29", &cookie).await;
    assert_eq!(rows(&found), 1);
    assert!(found.contains("data-slug=\"t29\""));
    // A bad status is a clear error, not a crash.
    let response = f
        .http
        .get(format!("{}/console/tenants?status=sleepy", f.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("is not a status"));
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_plan_is_edited_and_a_bad_one_is_refused_with_its_reason() {
    let f = start().await;
    let globex = f.demo.tenant("globex").unwrap().id;
    let (cookie, csrf) = f.sign_in().await;
    let plan = format!("{}/console/tenants/{globex}/plan", f.base);
    let post = |value: String| {
        f.http
            .post(&plan)
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.clone()), ("plan", value)])
            .send()
    };
    let response = post("pro".to_owned()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let tenant = f
        .demo
        .tenancy()
        .lifecycle()
        .get(globex)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.plan.as_deref(), Some("pro"));
    // Too long: the page says why, and the plan stays.
    let response = post("p".repeat(65)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("must be 1 to 64 bytes")
    );
    let tenant = f
        .demo
        .tenancy()
        .lifecycle()
        .get(globex)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.plan.as_deref(), Some("pro"));
    // Empty clears it.
    let response = post(String::new()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let tenant = f
        .demo
        .tenancy()
        .lifecycle()
        .get(globex)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.plan, None);
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn signing_out_ends_the_event_stream_and_signing_in_again_ends_the_old_session() {
    let f = start().await;
    let (cookie, csrf) = f.sign_in().await;
    let mut events = f
        .http
        .get(format!("{}/console/events", f.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let create = async |slug: &str| {
        let response = f
            .http
            .post(format!("{}/admin/tenants", f.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"slug": slug, "name": slug}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let tenant: serde_json::Value = response.json().await.unwrap();
        tenant["id"].as_str().unwrap().to_owned()
    };
    // Signed in, the stream carries the tenant events.
    let streamed = create("streamed").await;
    let mut seen = String::new();
    while !seen.contains(&format!("data: {streamed}")) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), events.chunk())
            .await
            .expect("a pushed event")
            .unwrap()
            .expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let response = f
        .http
        .post(format!("{}/console/sign-out", f.base))
        .header("cookie", &cookie)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // Signed out, the next push ends the stream instead of reaching it (events of the first
    // tenant sent before the sign-out may still be read).
    let unseen = create("unseen").await;
    let mut after = String::new();
    let rest = async {
        while let Some(chunk) = events.chunk().await.unwrap() {
            after.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), rest)
        .await
        .expect("the stream ends after the next push");
    assert!(!after.contains(&unseen), "{after}");

    // A sign-in from a browser that holds a session ends that session.
    let (first, _) = f.sign_in().await;
    let response = f
        .http
        .post(format!("{}/console/sign-in", f.base))
        .header("cookie", &first)
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = f
        .http
        .get(format!("{}/console/tenants", f.base))
        .header("cookie", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the old session ended"
    );
    assert_eq!(response.headers()["location"], "/console/sign-in");
}
