//! TLS against the throwaway PostgreSQL servers of `cargo xtask` (TLS on, certificates issued by
//! `TENANCY_TEST_PG_CA` for `localhost` and `127.0.0.1`, and a role refused without TLS): what
//! each `sslmode` does, and the errors of a wrong root certificate and of a plain connection to a
//! server that requires TLS.

use std::io::Write as _;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use tenancy_core::conformance::{test_database_url, test_pg_ca, test_tls_only_role, verify_full};
use tenancy_pg_connect::{ConnectError, SslMode, TlsConfig, connect_error, connect_options};

fn options(url: &str, tls: &TlsConfig) -> PgConnectOptions {
    connect_options(url, "store.url", tls, "store.tls").expect("valid connect options")
}

/// Whether the connection is encrypted, as the server sees it.
async fn encrypted(conn: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(conn)
        .await
        .expect("pg_stat_ssl")
}

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, ConnectError> {
    PgConnection::connect_with(options)
        .await
        .map_err(|e| connect_error(options, e))
}

/// A certificate authority of its own, which issued nothing the servers hold, as a PEM file.
fn another_ca() -> tempfile::NamedTempFile {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "another CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(params.self_signed(&key).unwrap().pem().as_bytes())
        .unwrap();
    file
}

/// The test server's URL for `user` (no query).
fn url_as(user: &str) -> String {
    let url = test_database_url();
    let (_, rest) = url.split_once('@').expect("the test URL names its user");
    format!("postgres://{user}:{user}@{rest}")
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_connects_encrypted_by_ip_and_by_name() {
    let by_ip = options(&verify_full(&test_database_url()), &TlsConfig::default());
    let mut conn = connect(&by_ip).await.expect("verify-full by IP");
    assert!(encrypted(&mut conn).await);
    let by_name = by_ip.clone().host("localhost");
    let mut conn = connect(&by_name).await.expect("verify-full by name");
    assert!(encrypted(&mut conn).await);
}

#[tokio::test]
async fn the_configuration_turns_tls_on_for_a_url_that_says_nothing() {
    let tls = TlsConfig {
        mode: Some(SslMode::VerifyFull),
        root_cert: Some(test_pg_ca().into()),
    };
    let mut conn = connect(&options(&test_database_url(), &tls))
        .await
        .expect("verify-full from the configuration");
    assert!(encrypted(&mut conn).await);
    // And off: the configuration wins over the URL.
    let url = verify_full(&test_database_url());
    let disable = TlsConfig {
        mode: Some(SslMode::Disable),
        root_cert: None,
    };
    let err = connect_options(&url, "store.url", &disable, "store.tls").unwrap_err();
    assert!(err.to_string().contains("never checks"), "{err}");
    let plain = options(&test_database_url(), &disable);
    let mut conn = connect(&plain).await.expect("plain connection");
    assert!(!encrypted(&mut conn).await);
}

#[tokio::test]
async fn require_encrypts_without_checking_the_certificate() {
    let url = format!("{}?sslmode=require", test_database_url());
    let mut conn = connect(&options(&url, &TlsConfig::default()))
        .await
        .expect("require");
    assert!(encrypted(&mut conn).await);
}

#[tokio::test]
async fn a_wrong_root_certificate_fails_with_a_tls_error_naming_the_certificate() {
    let other = another_ca();
    for mode in ["verify-full", "verify-ca"] {
        let url = format!(
            "{}?sslmode={mode}&sslrootcert={}",
            test_database_url(),
            other.path().display()
        );
        let err = connect(&options(&url, &TlsConfig::default()))
            .await
            .expect_err("a certificate the root does not issue must be refused");
        assert!(
            matches!(err, ConnectError::Tls { verifies: true, .. }),
            "{err:?}"
        );
        let shown = err.to_string();
        assert!(
            shown.starts_with("TLS with the PostgreSQL server 127.0.0.1:"),
            "{shown}"
        );
        assert!(shown.contains(&format!("sslmode={mode}")), "{shown}");
        let trusting = format!(
            "trusting the root certificate {}): invalid peer certificate: UnknownIssuer",
            other.path().display()
        );
        assert!(shown.contains(&trusting), "{shown}");
        assert!(
            shown.contains("must be issued by a trusted root certificate"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn verify_full_without_a_root_certificate_trusts_only_public_roots() {
    let url = format!("{}?sslmode=verify-full", test_database_url());
    let err = connect(&options(&url, &TlsConfig::default()))
        .await
        .expect_err("the throwaway CA is no public root");
    let shown = err.to_string();
    assert!(err.is_tls(), "{shown}");
    assert!(
        shown.contains("trusting Mozilla's root certificates"),
        "{shown}"
    );
    assert!(shown.contains("invalid peer certificate"), "{shown}");
}

#[tokio::test]
async fn a_server_that_requires_tls_refuses_a_plain_connection_with_a_clear_error() {
    let role = test_tls_only_role();
    let plain = format!("{}?sslmode=disable", url_as(&role));
    let err = connect(&options(&plain, &TlsConfig::default()))
        .await
        .expect_err("the role is refused without TLS");
    assert!(matches!(err, ConnectError::TlsRequired { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("refused a connection without TLS (sslmode=disable)"),
        "{shown}"
    );
    assert!(shown.contains("no encryption"), "{shown}");
    assert!(shown.contains("sslmode=verify-full"), "{shown}");
    // The same role over verified TLS is admitted.
    let mut conn = connect(&options(
        &verify_full(&url_as(&role)),
        &TlsConfig::default(),
    ))
    .await
    .expect("the role over TLS");
    assert!(encrypted(&mut conn).await);
}

#[tokio::test]
async fn a_root_certificate_removed_after_start_fails_naming_the_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(test_pg_ca(), file.path()).unwrap();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        test_database_url(),
        file.path().display()
    );
    let options = options(&url, &TlsConfig::default());
    let path = file.path().display().to_string();
    drop(file);
    let err = connect(&options).await.expect_err("the file is gone");
    assert!(
        matches!(err, ConnectError::RootCertificate { .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("the root certificate {path}")) && shown.contains("cannot be read"),
        "{shown}"
    );
}
