//! The throwaway PostgreSQL fixture: two clusters on free loopback ports, data under `target/`.
//!
//! Tests find them through environment variables:
//! - `TENANCY_TEST_DATABASE_URL`: superuser URL of the first server;
//! - `TENANCY_TEST_DATABASE_URL_2`: superuser URL of the second server (database-per-tenant tests);
//! - `TENANCY_TEST_APP_ROLE`: a login role on both servers that is not superuser, not BYPASSRLS and
//!   owns nothing (its password is its name); tests grant it what the application needs;
//! - `TENANCY_TEST_PG_BIN`, `TENANCY_TEST_PG_DATA_2`, `TENANCY_TEST_PG_OPTIONS_2`: the server
//!   binaries, and the second server's data directory and start options, so that a fault test can
//!   stop that server and start it again (`pg_ctl`, as the `postgres` user when run as root);
//! - `TENANCY_TEST_PG_CA`: the PEM file of the throwaway certificate authority that issued both
//!   servers' certificates. Both servers run with TLS on (`ssl = on`), each with a certificate
//!   for `localhost` and `127.0.0.1` and its key (mode 0600, owned by the server's user) in its data
//!   directory, so `?sslmode=verify-full&sslrootcert=$TENANCY_TEST_PG_CA` verifies them; plain
//!   connections are still accepted, except for the role below. The CA's key is never written;
//! - `TENANCY_TEST_TLS_ONLY_ROLE`: a login role (no other privilege; its password is its name)
//!   that `pg_hba.conf` refuses on any connection without TLS (`hostnossl ... reject`), to test a
//!   server that requires TLS.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{Result, output, root, run};

/// The application role the fixture creates.
pub(crate) const APP_ROLE: &str = "tenancy_app";

/// The role that `pg_hba.conf` admits only over TLS.
pub(crate) const TLS_ONLY_ROLE: &str = "tenancy_tls_only";

/// The client authentication rules of every server: trust on loopback, except that
/// `TLS_ONLY_ROLE` is refused without TLS (the first matching line decides).
fn hba() -> String {
    format!(
        "# Written by `cargo xtask`: the throwaway cluster's client authentication.\n\
         local     all  all              trust\n\
         hostnossl all  {TLS_ONLY_ROLE}  all           reject\n\
         host      all  all              127.0.0.1/32  trust\n\
         host      all  all              ::1/128       trust\n"
    )
}

/// The throwaway certificate authority of a cluster: it issues each server's certificate. Only
/// its certificate is written (as `ca.pem`); its key lives in memory for the start only.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Authority {
    fn new() -> Result<Self> {
        let fail = |e: rcgen::Error| format!("generating the test certificate authority: {e}");
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tenancy throwaway test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(fail)?;
        let pem = params.self_signed(&key).map_err(fail)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// A server certificate for `localhost` and `127.0.0.1`, and its key, both PEM.
    fn server_certificate(&self) -> Result<(String, String)> {
        let fail = |e: rcgen::Error| format!("generating a test server certificate: {e}");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(fail)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes `contents` to `path` with `mode`, owned by the server's user when we are root.
pub(crate) fn write_server_file(path: &Path, contents: &str, mode: u32) -> Result {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
    fs::write(path, contents).map_err(fail)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(fail)?;
    if is_root() {
        run(
            "chown a server file",
            Command::new("chown").arg("postgres:postgres").arg(path),
        )?;
    }
    Ok(())
}

/// The server's TLS certificate and key, and its client authentication rules, in its data
/// directory; the `postgres` options that use them.
fn configure_server(data: &Path, authority: &Authority) -> Result<String> {
    let (cert, key) = authority.server_certificate()?;
    write_server_file(&data.join("server.crt"), &cert, 0o644)?;
    // PostgreSQL refuses a key file that others can read.
    write_server_file(&data.join("server.key"), &key, 0o600)?;
    let hba_file = data.join("tenancy_hba.conf");
    write_server_file(&hba_file, &hba(), 0o600)?;
    Ok(format!(
        "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c hba_file={}",
        hba_file.display()
    ))
}

/// A running throwaway cluster of two servers, stopped and deleted when dropped.
#[derive(Debug)]
pub(crate) struct Cluster {
    bin: PathBuf,
    servers: Vec<Server>,
    dir: PathBuf,
    /// The certificate authority's certificate (`dir/ca.pem`).
    ca: PathBuf,
    keep: bool,
}

#[derive(Debug)]
struct Server {
    data: PathBuf,
    port: u16,
    /// The `postgres` options it was started with (`pg_ctl start -o`).
    options: String,
}

impl Server {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

pub(crate) fn is_root() -> bool {
    output("id", Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// A command run as the `postgres` system user when we are root (initdb and postgres refuse root).
pub(crate) fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Where `initdb` lives: `$PG_BIN`, the newest `/usr/lib/postgresql/*/bin`, or `$PATH`.
pub(crate) fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let found = output(
        "which initdb",
        Command::new("sh").args(["-c", "command -v initdb"]),
    );
    if let Ok(path) = found
        && let Some(dir) = Path::new(path.trim()).parent()
    {
        return Ok(dir.to_path_buf());
    }
    Err(
        "PostgreSQL server binaries (initdb, pg_ctl) not found. Install them \
         (`apt-get install -y postgresql` on Debian/Ubuntu) or set PG_BIN to their directory."
            .into(),
    )
}

pub(crate) fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A directory the server user can use: under `target/tenancy-pg/` when it can reach it, else
/// under /tmp.
fn base_dir(name: &str) -> Result<PathBuf> {
    base_dir_in("tenancy-pg", name)
}

/// A fresh directory the server user can use: `target/<group>/<name>` when it can reach it, else
/// under /tmp.
pub(crate) fn base_dir_in(group: &str, name: &str) -> Result<PathBuf> {
    let preferred = root().join("target").join(group).join(name);
    let _ = fs::remove_dir_all(&preferred);
    fs::create_dir_all(&preferred).map_err(|e| format!("creating {}: {e}", preferred.display()))?;
    if !is_root() {
        return Ok(preferred);
    }
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(&preferred)
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        return Ok(preferred);
    }
    let fallback = std::env::temp_dir().join(format!("{group}-{name}"));
    println!(
        "    note: the postgres user cannot reach {}; using {}",
        preferred.display(),
        fallback.display()
    );
    let _ = fs::remove_dir_all(&fallback);
    fs::create_dir_all(&fallback).map_err(|e| format!("creating {}: {e}", fallback.display()))?;
    Ok(fallback)
}

fn start_server(bin: &Path, data: &Path, authority: &Authority) -> Result<Server> {
    fs::create_dir_all(data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    if is_root() {
        run(
            "chown data directory",
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data),
        )?;
    }
    run(
        "initdb",
        as_server_user(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .arg("--pgdata")
            .arg(data)
            .stdout(std::process::Stdio::null()),
    )?;
    let tls = configure_server(data, authority)?;
    let port = free_port()?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300 -c max_locks_per_transaction=512 \
         -c shared_buffers=128MB {tls}",
        data.display()
    );
    let started = run(
        "pg_ctl start",
        as_server_user(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(data.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .stdout(std::process::Stdio::null()),
    );
    let server = Server {
        data: data.to_path_buf(),
        port,
        options,
    };
    let sql = format!(
        "CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; \
         CREATE ROLE {TLS_ONLY_ROLE} LOGIN PASSWORD '{TLS_ONLY_ROLE}' NOSUPERUSER NOCREATEDB NOCREATEROLE"
    );
    let role = started.and_then(|()| {
        run(
            "create application role",
            Command::new(bin.join("psql")).args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &server.url(),
                "-c",
                &sql,
            ]),
        )
    });
    if let Err(e) = role {
        // Not yet part of a cluster, so no Drop stops it: a failed start (pg_ctl may give up
        // waiting on a server that still comes up) or setup must not leave a server running.
        stop_server(bin, data);
        return Err(e);
    }
    Ok(server)
}

pub(crate) fn stop_server(bin: &Path, data: &Path) {
    let _ = as_server_user(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "stop"])
        .stdout(std::process::Stdio::null())
        .status();
}

impl Cluster {
    /// Starts two servers for this run; they are stopped and deleted on drop.
    pub(crate) fn start() -> Result<Self> {
        Self::start_in(bin_dir()?, &format!("run-{}", std::process::id()))
    }

    /// Starts two servers with the binaries of `bin` under `target/tenancy-pg/<name>`. Until the
    /// caller sets `keep`, dropping the cluster (a failed start included) stops and deletes them.
    fn start_in(bin: PathBuf, name: &str) -> Result<Self> {
        println!("\n==> PostgreSQL fixture");
        let dir = base_dir(name)?;
        let authority = Authority::new()?;
        let ca = dir.join("ca.pem");
        fs::write(&ca, &authority.pem).map_err(|e| format!("writing {}: {e}", ca.display()))?;
        let mut cluster = Self {
            bin,
            servers: Vec::new(),
            dir: dir.clone(),
            ca,
            keep: false,
        };
        for i in 1..=2 {
            // On failure `cluster` is dropped, which stops what already started.
            let server = start_server(&cluster.bin, &dir.join(format!("server{i}")), &authority)?;
            println!("    server {i}: {}", server.url());
            cluster.servers.push(server);
        }
        Ok(cluster)
    }

    /// The variables tests read, as (name, value) pairs.
    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TENANCY_TEST_DATABASE_URL", self.servers[0].url()),
            ("TENANCY_TEST_DATABASE_URL_2", self.servers[1].url()),
            ("TENANCY_TEST_APP_ROLE", APP_ROLE.to_owned()),
            ("TENANCY_TEST_PG_BIN", self.bin.display().to_string()),
            (
                "TENANCY_TEST_PG_DATA_2",
                self.servers[1].data.display().to_string(),
            ),
            ("TENANCY_TEST_PG_OPTIONS_2", self.servers[1].options.clone()),
            ("TENANCY_TEST_PG_CA", self.ca.display().to_string()),
            ("TENANCY_TEST_TLS_ONLY_ROLE", TLS_ONLY_ROLE.to_owned()),
        ]
    }

    /// Exports the cluster's URLs to a command's environment.
    pub(crate) fn export(&self, cmd: &mut Command) {
        for (name, value) in self.vars() {
            cmd.env(name, value);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for server in &self.servers {
            stop_server(&self.bin, &server.data);
        }
        let _ = fs::remove_dir_all(&self.dir);
        println!("    PostgreSQL fixture stopped and deleted");
    }
}

fn state_file() -> PathBuf {
    root().join("target").join("tenancy-pg").join("manual.env")
}

/// `cargo xtask pg start`: starts a cluster that outlives the command.
pub(crate) fn start_by_hand() -> Result {
    if state_file().exists() {
        return Err(
            "a throwaway cluster is already running (`cargo xtask pg url` shows it, \
                    `cargo xtask pg stop` stops it)"
                .into(),
        );
    }
    // `keep` only once the state file names the servers: a failed start stops what started.
    let mut cluster = Cluster::start_in(bin_dir()?, "manual")?;
    let mut state = String::new();
    for (name, value) in cluster.vars() {
        state.push_str(&format!("export {name}='{value}'\n"));
    }
    for server in &cluster.servers {
        state.push_str(&format!("# data {}\n", server.data.display()));
    }
    fs::write(state_file(), &state)
        .map_err(|e| format!("writing {}: {e}", state_file().display()))?;
    cluster.keep = true;
    println!(
        "\n{state}\nPaste the export lines into your shell, then `cargo test --workspace --all-features`."
    );
    Ok(())
}

/// `cargo xtask pg url`.
pub(crate) fn print_urls() -> Result {
    let state = fs::read_to_string(state_file()).map_err(|_| {
        "no throwaway cluster is running: start one with `cargo xtask pg start`".to_owned()
    })?;
    print!("{state}");
    Ok(())
}

/// `cargo xtask pg stop`.
pub(crate) fn stop_by_hand() -> Result {
    let state = fs::read_to_string(state_file())
        .map_err(|_| "no throwaway cluster is running".to_owned())?;
    let bin = bin_dir()?;
    let data: Vec<&Path> = state
        .lines()
        .filter_map(|l| l.strip_prefix("# data "))
        .map(Path::new)
        .collect();
    // Stop every server before deleting anything: the servers share one parent directory.
    for dir in &data {
        stop_server(&bin, dir);
    }
    for parent in data.iter().filter_map(|dir| dir.parent()) {
        let _ = fs::remove_dir_all(parent);
    }
    let _ = fs::remove_file(state_file());
    println!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Stand-in server binaries in a fresh directory: `initdb` succeeds, `pg_ctl` logs its
    /// arguments, `psql` succeeds `psql_successes` times and then fails.
    fn fake_bin(name: &str, psql_successes: u32) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let log = dir.join("pg_ctl.log");
        fs::write(&log, "").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        let count = dir.join("psql.count");
        let scripts = [
            ("initdb", "exit 0".to_owned()),
            ("pg_ctl", format!("echo \"$@\" >> {}", log.display())),
            (
                "psql",
                format!(
                    "echo x >> {c}; [ $(wc -l < {c}) -le {psql_successes} ]",
                    c = count.display()
                ),
            ),
        ];
        for (file, body) in scripts {
            let path = dir.join(file);
            fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        (dir, log)
    }

    fn stops(log: &Path) -> usize {
        fs::read_to_string(log)
            .unwrap()
            .lines()
            .filter(|l| l.ends_with(" stop"))
            .count()
    }

    #[test]
    fn a_server_whose_setup_fails_is_stopped() {
        let (bin, log) = fake_bin("setup-fails", 0);
        let authority = Authority::new().unwrap();
        let err = start_server(&bin, &bin.join("data"), &authority).unwrap_err();
        assert!(err.contains("create application role"), "{err}");
        assert_eq!(stops(&log), 1, "the started server was left running");
        fs::remove_dir_all(&bin).unwrap();
    }

    #[test]
    fn a_cluster_whose_second_server_fails_stops_the_first() {
        let (bin, log) = fake_bin("second-fails", 1);
        let name = format!("test-{}", std::process::id());
        let err = Cluster::start_in(bin.clone(), &name).unwrap_err();
        assert!(err.contains("create application role"), "{err}");
        assert_eq!(stops(&log), 2, "a started server was left running");
        fs::remove_dir_all(&bin).unwrap();
    }
}
