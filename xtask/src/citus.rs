//! The throwaway Citus cluster: a coordinator and two workers on free loopback ports, data under
//! `target/tenancy-citus/`, with Citus built from the vendored source when the installed one is not
//! this version.
//!
//! Tests find it through environment variables:
//! - `TENANCY_TEST_CITUS_URL`: superuser URL of the coordinator (database `postgres`, where the
//!   `citus` extension is created and both workers are registered);
//! - `TENANCY_TEST_APP_ROLE`: the same non-superuser application role as the PostgreSQL fixture,
//!   created on the coordinator (Citus propagates it to the workers).
//!
//! The Citus source is `../shared/vendor/citus/citus-13.2.2.tar.gz` beside the repository, with
//! `pg15-have-createdb-privilege.patch` (PostgreSQL 15.18+ declares a function that Citus 13.2.2
//! defines again for 15). It is built in `target/citus-build` (log: `target/citus-build/build.log`)
//! and installed into the server's library directory (`pg_config --pkglibdir`), where a marker
//! file records the version so the next run skips the build. Citus is AGPL-3.0 software run as a
//! test server; nothing of it is linked into the project's crates.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::pg::{
    APP_ROLE, as_server_user, base_dir_in, bin_dir, free_port, is_root, stop_server,
    write_server_file,
};
use crate::{Result, output, root, run};

/// The Citus release the fixture builds and runs.
pub(crate) const VERSION: &str = "13.2.2";

/// The patch applied to the source before building.
const PATCH: &str = "pg15-have-createdb-privilege.patch";

/// What the marker file beside `citus.so` holds once this build is installed.
fn marker_text() -> String {
    format!("citus {VERSION} + {PATCH}\n")
}

/// The vendored source directory: `../shared/vendor/citus` from the workspace root.
fn vendor_dir() -> Result<PathBuf> {
    let dir = root()
        .join("..")
        .join("shared")
        .join("vendor")
        .join("citus");
    let tarball = dir.join(format!("citus-{VERSION}.tar.gz"));
    for file in [&tarball, &dir.join(PATCH)] {
        if !file.is_file() {
            return Err(format!(
                "the Citus {VERSION} source is missing: {} not found. The Citus fixture builds \
                 Citus from citus-{VERSION}.tar.gz and {PATCH} in ../shared/vendor/citus/ beside \
                 the repository (tag v{VERSION} of github.com/citusdata/citus, `git archive \
                 --prefix=citus-{VERSION}/ v{VERSION}`); put them there, or install Citus \
                 {VERSION} for this PostgreSQL yourself and write `{}` into `citus.tenancy-build` \
                 in `pg_config --pkglibdir`",
                file.display(),
                marker_text().trim_end()
            ));
        }
    }
    Ok(dir)
}

fn pkglibdir(bin: &Path) -> Result<PathBuf> {
    let dir = output(
        "pg_config --pkglibdir",
        Command::new(bin.join("pg_config")).arg("--pkglibdir"),
    )
    .map_err(|e| {
        format!(
            "{e}\n(pg_config comes with the PostgreSQL server development package: \
             `apt-get install -y postgresql-server-dev-15` on Debian 12, as .ci/run does)"
        )
    })?;
    Ok(PathBuf::from(dir.trim()))
}

/// Whether Citus of this version is installed for the server of `bin`.
fn installed(lib: &Path) -> bool {
    lib.join("citus.so").is_file()
        && fs::read_to_string(lib.join("citus.tenancy-build")).is_ok_and(|m| m == marker_text())
}

/// Builds and installs Citus unless this version is installed already.
pub(crate) fn ensure_installed(bin: &Path) -> Result {
    let lib = pkglibdir(bin)?;
    if installed(&lib) {
        println!("    Citus {VERSION} is installed in {}", lib.display());
        return Ok(());
    }
    build_and_install(bin, &lib)
}

/// The last `n` lines of a file, for an error message.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs one build step with its output appended to `log`, printing progress every minute.
fn build_step(step: &str, cmd: &mut Command, log: &Path) -> Result {
    let started = Instant::now();
    println!("    citus build: {step}");
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("citus build: {step}: could not start: {e}"))?;
    let mut last_report = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("citus build: {step}: {e}")),
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            let compiled = fs::read_to_string(log)
                .map(|t| t.lines().filter(|l| l.starts_with("gcc ")).count())
                .unwrap_or(0);
            println!(
                "    citus build: {step}: {:.0} min so far, {compiled} compiler runs logged",
                started.elapsed().as_secs_f64() / 60.0
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if !status.success() {
        return Err(format!(
            "citus build: {step} failed ({status}); the log is {}. Its last lines:\n{}",
            log.display(),
            tail(log, 25)
        ));
    }
    println!(
        "    citus build: {step} done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Extracts, patches, configures, compiles and installs Citus, then writes the marker.
fn build_and_install(bin: &Path, lib: &Path) -> Result {
    let vendor = vendor_dir()?;
    println!(
        "\n==> building Citus {VERSION} (not installed in {}); this takes 10-30 minutes",
        lib.display()
    );
    let started = Instant::now();
    let dir = root().join("target").join("citus-build");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let log = dir.join("build.log");
    println!("    log: {}", log.display());
    build_step(
        "extract",
        Command::new("tar")
            .arg("xzf")
            .arg(vendor.join(format!("citus-{VERSION}.tar.gz")))
            .arg("-C")
            .arg(&dir),
        &log,
    )?;
    let src = dir.join(format!("citus-{VERSION}"));
    build_step(
        "patch",
        Command::new("patch")
            .args(["-p1", "-i"])
            .arg(vendor.join(PATCH))
            .current_dir(&src),
        &log,
    )?;
    let mut pg_config = std::ffi::OsString::from("PG_CONFIG=");
    pg_config.push(bin.join("pg_config"));
    build_step(
        "configure",
        Command::new(src.join("configure"))
            .arg(pg_config)
            .current_dir(&src),
        &log,
    )?;
    let jobs = std::thread::available_parallelism().map_or(2, usize::from);
    build_step(
        "make",
        Command::new("make")
            .arg(format!("-j{jobs}"))
            .current_dir(&src),
        &log,
    )?;
    build_step(
        "make install",
        Command::new("make").arg("install").current_dir(&src),
        &log,
    )
    .map_err(|e| {
        if is_root() {
            e
        } else {
            format!("{e}\n(installing into {} needs root)", lib.display())
        }
    })?;
    let marker = lib.join("citus.tenancy-build");
    fs::write(&marker, marker_text()).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    println!(
        "    Citus {VERSION} built and installed in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// One node of the cluster.
#[derive(Debug)]
struct Node {
    data: PathBuf,
    port: u16,
}

impl Node {
    /// Without TLS: `CREATE EXTENSION citus` turns `ssl` on with a self-signed certificate
    /// (for the nodes' own connections) that TLS clients verifying certificates refuse.
    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

/// Runs `sql` as the superuser on `node`.
fn psql(bin: &Path, node: &Node, step: &str, sql: &str) -> Result {
    let out = Command::new(bin.join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &node.url(),
            "-c",
            sql,
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("{step}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{step} failed on port {}: {}",
            node.port,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The settings every node runs with (appended to its `postgresql.conf`).
fn node_conf(port: u16, data: &Path, hba: &Path) -> String {
    format!(
        "\n# Written by `cargo xtask citus`: a throwaway Citus node.\n\
         shared_preload_libraries = 'citus'\n\
         port = {port}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{data}'\n\
         hba_file = '{hba}'\n\
         fsync = off\n\
         # synchronous_commit stays on: Citus's non-blocking moves end their catch-up at\n\
         # pg_current_wal_lsn(), and with it off acknowledged writes can be lost in a move.\n\
         full_page_writes = off\n\
         shared_buffers = 64MB\n\
         max_connections = 300\n\
         max_locks_per_transaction = 512\n\
         # Multi-node writes commit with two-phase commit.\n\
         max_prepared_transactions = 300\n\
         # Non-blocking shard and schema moves use logical replication.\n\
         wal_level = logical\n\
         max_replication_slots = 16\n\
         max_wal_senders = 16\n\
         max_worker_processes = 32\n\
         # Per-tenant statistics (`citus_stat_tenants`) for every tenant, not only sampled ones.\n\
         citus.stat_tenants_track = 'all'\n",
        data = data.display(),
        hba = hba.display(),
    )
}

/// The setting that lets Citus's shard moves and splits decode WAL, on servers that have it.
///
/// PostgreSQL 15.20 (and the other branches' releases of the same day) added
/// `output_plugin_libraries`, the logical decoding output plugins a replication connection may
/// name (`pgoutput, test_decoding` by default). Citus's non-blocking shard splits
/// (`isolate_tenant_to_new_shard`) create their replication slots with its own plugin, `citus`,
/// which such a server refuses ("library \"citus\" may not be used as an output plugin"). Older
/// servers do not know the setting and would refuse to start with it, so it is written only when
/// `postgres --describe-config` lists it.
fn output_plugin_conf(bin: &Path) -> Result<&'static str> {
    let known = output(
        "postgres --describe-config",
        Command::new(bin.join("postgres")).arg("--describe-config"),
    )?
    .lines()
    .any(|line| line.starts_with("output_plugin_libraries\t"));
    Ok(if known {
        "# Citus's shard splits decode WAL with its own output plugin, `citus`.\n\
         output_plugin_libraries = 'pgoutput, test_decoding, citus'\n"
    } else {
        ""
    })
}

fn start_node(bin: &Path, data: &Path) -> Result<Node> {
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
            .stdout(Stdio::null()),
    )?;
    let hba = data.join("tenancy_hba.conf");
    write_server_file(
        &hba,
        "# Written by `cargo xtask citus`: trust on loopback.\n\
         local all all              trust\n\
         host  all all 127.0.0.1/32 trust\n\
         host  all all ::1/128      trust\n",
        0o600,
    )?;
    let port = free_port()?;
    let plugins = output_plugin_conf(bin)?;
    let conf = data.join("postgresql.conf");
    fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut f| {
            f.write_all(node_conf(port, data, &hba).as_bytes())?;
            f.write_all(plugins.as_bytes())
        })
        .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let node = Node {
        data: data.to_path_buf(),
        port,
    };
    let started = run(
        "pg_ctl start",
        as_server_user(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(data.join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null()),
    )
    .and_then(|()| {
        psql(
            bin,
            &node,
            "CREATE EXTENSION citus",
            "CREATE EXTENSION citus",
        )
    });
    if let Err(e) = started {
        // Not yet part of a cluster, so no Drop stops it.
        stop_server(bin, data);
        return Err(e);
    }
    Ok(node)
}

/// A running throwaway Citus cluster, stopped and deleted when dropped (unless kept).
#[derive(Debug)]
pub(crate) struct Cluster {
    bin: PathBuf,
    /// The coordinator first, then the workers.
    nodes: Vec<Node>,
    dir: PathBuf,
    keep: bool,
}

impl Cluster {
    /// Builds Citus when needed, then starts a cluster for this run.
    pub(crate) fn start() -> Result<Self> {
        Self::start_in(bin_dir()?, &format!("run-{}", std::process::id()))
    }

    fn start_in(bin: PathBuf, name: &str) -> Result<Self> {
        println!("\n==> Citus fixture (Citus {VERSION}: a coordinator and two workers)");
        ensure_installed(&bin)?;
        let dir = base_dir_in("tenancy-citus", name)?;
        let mut cluster = Self {
            bin,
            nodes: Vec::new(),
            dir: dir.clone(),
            keep: false,
        };
        for name in ["coordinator", "worker1", "worker2"] {
            // On failure `cluster` is dropped, which stops what already started.
            let node = start_node(&cluster.bin, &dir.join(name))?;
            println!("    {name}: {}", node.url());
            cluster.nodes.push(node);
        }
        let coordinator = &cluster.nodes[0];
        let mut sql = format!(
            "SELECT citus_set_coordinator_host('127.0.0.1', {});",
            coordinator.port
        );
        for worker in &cluster.nodes[1..] {
            sql.push_str(&format!(
                " SELECT citus_add_node('127.0.0.1', {});",
                worker.port
            ));
        }
        // Created after the workers joined, so Citus creates it on them too.
        sql.push_str(&format!(
            " CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}' NOSUPERUSER NOBYPASSRLS \
             NOCREATEDB NOCREATEROLE;"
        ));
        psql(&cluster.bin, coordinator, "register the workers", &sql)?;
        Ok(cluster)
    }

    /// The variables tests read, as (name, value) pairs.
    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TENANCY_TEST_CITUS_URL", self.nodes[0].url()),
            ("TENANCY_TEST_APP_ROLE", APP_ROLE.to_owned()),
        ]
    }

    /// Exports the cluster's variables to a command's environment.
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
        for node in &self.nodes {
            stop_server(&self.bin, &node.data);
        }
        let _ = fs::remove_dir_all(&self.dir);
        println!("    Citus fixture stopped and deleted");
    }
}

fn state_file() -> PathBuf {
    root()
        .join("target")
        .join("tenancy-citus")
        .join("manual.env")
}

/// `cargo xtask citus start`: builds Citus when needed, starts a cluster that outlives the
/// command.
pub(crate) fn start_by_hand() -> Result {
    if state_file().exists() {
        return Err(
            "a throwaway Citus cluster is already running (`cargo xtask citus url` \
                    shows it, `cargo xtask citus stop` stops it)"
                .into(),
        );
    }
    let mut cluster = Cluster::start_in(bin_dir()?, "manual")?;
    let mut state = String::new();
    for (name, value) in cluster.vars() {
        state.push_str(&format!("export {name}='{value}'\n"));
    }
    for node in &cluster.nodes {
        state.push_str(&format!("# data {}\n", node.data.display()));
    }
    fs::write(state_file(), &state)
        .map_err(|e| format!("writing {}: {e}", state_file().display()))?;
    cluster.keep = true;
    println!(
        "\n{state}\nPaste the export lines into your shell, then \
         `cargo test -p tenancy-isolation-sql --all-features --test citus`."
    );
    Ok(())
}

/// `cargo xtask citus url`.
pub(crate) fn print_urls() -> Result {
    let state = fs::read_to_string(state_file()).map_err(|_| {
        "no throwaway Citus cluster is running: start one with `cargo xtask citus start`".to_owned()
    })?;
    print!("{state}");
    Ok(())
}

/// `cargo xtask citus stop`.
pub(crate) fn stop_by_hand() -> Result {
    let state = fs::read_to_string(state_file())
        .map_err(|_| "no throwaway Citus cluster is running".to_owned())?;
    let bin = bin_dir()?;
    let data: Vec<&Path> = state
        .lines()
        .filter_map(|l| l.strip_prefix("# data "))
        .map(Path::new)
        .collect();
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
