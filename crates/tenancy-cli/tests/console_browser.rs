//! The operator console in a real browser: headless Chromium driven over WebDriver (fantoccini)
//! through `chromedriver`, which this test starts itself on a free port; the demo runs in-process
//! on port 0 with a temporary SQLite file. One browser session walks through every must-show of
//! the console, and writes the screenshots of docs/console.md into docs/console/.
//!
//! `chromedriver` and `chromium` must be installed (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` does it): without them this test fails, it never skips.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tenancy_cli::demo::{self, DemoOptions};

const ADMIN_TOKEN: &str = "console-browser-test-admin-token";
/// A tenant name holding markup: it must show as text.
const EVIL_NAME: &str = "<script>window.__pwned = 1</script><b>Evil</b> & Co";
/// How long the test waits for something the page must show (pushed updates, samples).
const PATIENCE: Duration = Duration::from_secs(20);

/// `chromedriver`, stopped when dropped, and the temporary directory it and Chromium write to
/// (removed after it: Chromium leaves its profile's singleton directory behind otherwise).
struct Driver(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// Starts chromedriver on a free loopback port; returns it and its URL once it answers.
fn start_driver() -> (Driver, String) {
    let chromedriver = find_on_path("chromedriver").unwrap_or_else(|| {
        panic!(
            "chromedriver is not on PATH: the console's browser tests need headless Chromium and \
             its WebDriver (Debian: `apt-get install chromium chromium-driver`, as .ci/run does)"
        )
    });
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let scratch = tempfile::tempdir().expect("a temporary directory for Chromium");
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .env("TMPDIR", scratch.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let driver = Driver(child, scratch);
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=1280,1000",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
            ]
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .expect("a Chromium session (is the `chromium` package installed?)")
}

/// Waits until `check` holds (it is asked again every 100 ms), at most [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of `css` (found again if a pushed update replaced it meanwhile).
async fn text(client: &Client, css: &str) -> String {
    let mut last = None;
    for _ in 0..5 {
        match client.find(Locator::Css(css)).await {
            Ok(element) => match element.text().await {
                Ok(text) => return text,
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no element {css}: {last:?}")
}

async fn fill(client: &Client, css: &str, value: &str) {
    let input = client.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

/// Clicks `css`, a button or link that loads another page, and waits until that page has loaded.
async fn click(client: &Client, css: &str) {
    client
        .execute("window.__before_click = true; return 1;", vec![])
        .await
        .unwrap();
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .click()
        .await
        .unwrap();
    eventually(&format!("the page {css} leads to"), || async {
        client
            .execute(
                "return window.__before_click === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await
            .unwrap()
            == json!(true)
    })
    .await;
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/console");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn path(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_owned()
}

struct Demo {
    demo: demo::Demo,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

impl Demo {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("demo.db").display());
        let mut options = DemoOptions::new("127.0.0.1:0".parse().unwrap(), url);
        options.admin_token = Some(ADMIN_TOKEN.to_owned());
        let demo = demo::start(options).await.unwrap();
        let base = format!("http://{}", demo.addr());
        Self {
            demo,
            http: reqwest::Client::new(),
            base,
            _dir: dir,
        }
    }

    /// A tenant created through the JSON admin API (as another operator would).
    async fn create(&self, slug: &str, name: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/admin/tenants", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "slug": slug, "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// The status and error code of a tenant request by path.
    async fn whoami(&self, slug: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/tenants/{slug}/api/whoami", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn effective(&self, slug: &str) -> Value {
        self.http
            .get(format!("{}/tenants/{slug}/api/config", self.base))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["config"]
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_steers_tenants_from_the_console() {
    let (_driver, webdriver) = start_driver();
    let demo = Demo::start().await;
    let evil = demo.create("evil", EVIL_NAME).await;
    let client = browser(&webdriver).await;
    let console = format!("{}/console", demo.base);

    // Signed out, every page leads to the sign-in form; a wrong token is refused.
    client.goto(&format!("{console}/tenants")).await.unwrap();
    assert_eq!(path(&client).await, "/console/sign-in");
    fill(&client, "#token", "not-the-token").await;
    click(&client, "form.card button[type=submit]").await;
    assert_eq!(
        text(&client, "#token-error").await,
        "That is not the admin token."
    );
    screenshot(&client, "sign-in").await;

    // Sign in with the admin token: a session cookie, HttpOnly and SameSite=Strict; the token is
    // in no URL.
    fill(&client, "#token", ADMIN_TOKEN).await;
    click(&client, "form.card button[type=submit]").await;
    assert_eq!(path(&client).await, "/console/tenants");
    let url = client.current_url().await.unwrap();
    assert!(!url.as_str().contains(ADMIN_TOKEN));
    let cookie = client.get_named_cookie("tenancy_console").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );
    assert_eq!(cookie.path(), Some("/console"));
    // Script cannot read it.
    let visible = client
        .execute("return document.cookie;", vec![])
        .await
        .unwrap();
    assert!(
        !visible
            .as_str()
            .unwrap_or_default()
            .contains("tenancy_console")
    );

    // The tenant whose name holds markup is listed with its name as text: no script ran, no
    // element was made from it.
    let link = client
        .find(Locator::Css("tr[data-slug=evil] td a"))
        .await
        .unwrap();
    assert_eq!(link.text().await.unwrap(), EVIL_NAME);
    let injected = client
        .execute(
            "return [window.__pwned === undefined, document.querySelectorAll('main script, main b').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!([true, 0]));

    // Find a tenant: search by part of its name.
    fill(&client, "#q", "globex corp").await;
    click(&client, "form.search button").await;
    let rows = client
        .find_all(Locator::Css("#tenant-list tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].attr("data-slug").await.unwrap().as_deref(),
        Some("globex")
    );
    // And by status: initech is the one suspended.
    client
        .goto(&format!("{console}/tenants?status=suspended"))
        .await
        .unwrap();
    assert_eq!(slugs(&client).await, vec!["initech".to_owned()]);
    client.goto(&format!("{console}/tenants")).await.unwrap();
    screenshot(&client, "tenants").await;

    // Suspend globex, with a reason, after the confirmation; its next request is refused.
    assert_eq!(demo.whoami("globex").await.0, 200);
    click(&client, "tr[data-slug=globex] td a").await;
    assert_eq!(text(&client, "h1").await, "Globex Corporation");
    fill(&client, "#reason", "invoices <b>unpaid</b>").await;
    click(&client, "form[action$='/suspend'] button").await;
    assert_eq!(text(&client, "h1").await, "Suspend Globex Corporation?");
    screenshot(&client, "confirm").await;
    // Not yet: the confirmation page changed nothing.
    assert_eq!(demo.whoami("globex").await.0, 200);
    click(&client, "form.card button.danger").await;
    assert_eq!(text(&client, "p.notice").await, "Tenant suspended.");
    assert_eq!(text(&client, "#status .status").await, "suspended");
    assert_eq!(
        text(&client, "#status .reason").await,
        "invoices <b>unpaid</b>"
    );
    let (status, body) = demo.whoami("globex").await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "tenant_suspended", "{body}");
    // The history shows the event, pushed to the page as it arrived.
    eventually("the suspension in the history", || async {
        text(&client, "#status")
            .await
            .contains("suspended invoices")
    })
    .await;

    // Edit an override: a bad value is refused with the reason next to the field, nothing
    // stored; a good one is saved.
    fill(&client, "#value-max_users", "{oops").await;
    click(&client, "#value-max_users ~ button").await;
    let error = text(&client, "#value-max_users-error").await;
    assert!(error.starts_with("not valid JSON"), "{error}");
    let input = client.find(Locator::Css("#value-max_users")).await.unwrap();
    assert_eq!(
        input.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(
        input.attr("aria-describedby").await.unwrap().as_deref(),
        Some("value-max_users-error")
    );
    fill(&client, "#value-max_users", "null").await;
    click(&client, "#value-max_users ~ button").await;
    let error = text(&client, "#value-max_users-error").await;
    assert!(
        error.contains("is null: remove the override instead"),
        "{error}"
    );
    screenshot(&client, "tenant").await;
    // Nothing was stored: the default still applies.
    let globex = demo.demo.tenant("globex").unwrap().id;
    let stored = demo.demo.tenancy().config().get(globex, "max_users").await;
    assert_eq!(stored.unwrap(), Some(json!(10)));
    // A bad key in the new-override form is reported next to the key.
    fill(&client, "#new-key", "Not A Key").await;
    fill(&client, "#new-value", "1").await;
    click(&client, "form.new-override button").await;
    assert!(
        text(&client, "#new-key-error")
            .await
            .contains("may hold only")
    );
    fill(&client, "#value-max_users", "25").await;
    click(&client, "#value-max_users ~ button").await;
    assert_eq!(text(&client, "p.notice").await, "Override saved.");
    // Activate it again to read its effective configuration over the tenant API.
    click(&client, "form[action$='/activate'] button").await;
    assert_eq!(text(&client, "p.notice").await, "Tenant activated.");
    assert_eq!(demo.whoami("globex").await.0, 200);
    assert_eq!(demo.effective("globex").await["max_users"], 25);

    // A tenant created elsewhere appears in the open list without a reload.
    client.goto(&format!("{console}/tenants")).await.unwrap();
    client
        .execute("window.__same_page = true; return 1;", vec![])
        .await
        .unwrap();
    eventually("the live connection", || async {
        client
            .execute("return document.body.getAttribute('data-live');", vec![])
            .await
            .unwrap()
            == json!("connected")
    })
    .await;
    demo.create("umbrella", "Umbrella Corporation").await;
    eventually("umbrella in the list", || async {
        slugs(&client).await.contains(&"umbrella".to_owned())
    })
    .await;
    let same = client
        .execute("return window.__same_page === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was reloaded");

    // Live: traffic shows as a tenant's rate on the live page, pushed as samples arrive.
    for _ in 0..40 {
        assert_eq!(demo.whoami("acme").await.0, 200);
        let _ = demo.whoami("initech").await;
    }
    client.goto(&format!("{console}/live")).await.unwrap();
    eventually("acme among the busiest tenants", || async {
        text(&client, "#live").await.contains("Acme Corporation")
    })
    .await;
    eventually("initech's refusals by reason", || async {
        text(&client, "#live").await.contains("tenant_suspended")
    })
    .await;
    screenshot(&client, "live").await;

    // A narrow screen: the tenant page in one column.
    client.set_window_size(390, 900).await.unwrap();
    client
        .goto(&format!(
            "{console}/tenants/{}",
            evil["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(text(&client, "h1").await, EVIL_NAME);
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        json!(true),
        "the page is wider than a narrow screen"
    );
    screenshot(&client, "narrow").await;

    // Signing out ends the session: the console asks to sign in again.
    client.set_window_size(1280, 1000).await.unwrap();
    click(&client, "form.signout button").await;
    assert_eq!(path(&client).await, "/console/sign-in");
    client.goto(&format!("{console}/tenants")).await.unwrap();
    assert_eq!(path(&client).await, "/console/sign-in");

    client.close().await.unwrap();
    demo.demo.shutdown().await.unwrap();
}

async fn slugs(client: &Client) -> Vec<String> {
    let rows = client
        .find_all(Locator::Css("#tenant-list tbody tr"))
        .await
        .unwrap();
    let mut slugs = Vec::new();
    for row in rows {
        if let Ok(Some(slug)) = row.attr("data-slug").await {
            slugs.push(slug);
        }
    }
    slugs
}
