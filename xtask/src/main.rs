//! Project automation, run as `cargo xtask <command>` (see `cargo xtask help`).
//!
//! Uses the standard library, and `rcgen` for the PostgreSQL fixture's throwaway certificates.
//! The Citus fixture (`citus`) builds Citus from the vendored source with the system toolchain.

mod callgrind;
mod citus;
mod examples;
mod pg;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci            everything CI checks: fmt, clippy per feature set, dependency-tree rules,
                tests and doctests against a throwaway PostgreSQL and a throwaway Citus
                cluster (Citus built first when missing), the examples, packaging, cargo-deny
  examples      build every example, then run each one (against a throwaway PostgreSQL)
  bench         run the benchmarks (criterion and the PostgreSQL benches) against a
                throwaway PostgreSQL, then `instructions`; figures go to target/criterion
                and stdout
  instructions  user-space instructions per HTTP request through the tenancy middleware,
                counted by valgrind's callgrind (needs valgrind) [--requests N1,N2] [--rounds R]
  pg start      start a throwaway PostgreSQL cluster (two servers) and print its URLs
  pg url        print the URLs of the running throwaway cluster
  pg stop       stop and delete the throwaway cluster
  citus start   build Citus when the installed one is not 13.2.2 (from ../shared/vendor/citus),
                then start a throwaway Citus cluster (a coordinator, two workers), print its URL
  citus url     print the URL of the running throwaway Citus cluster
  citus stop    stop and delete the throwaway Citus cluster
";

/// The result of an xtask step: an error message for the user.
type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["ci"] => ci(),
        ["bench", rest @ ..] => bench(rest),
        ["examples"] => pg::Cluster::start().and_then(|cluster| examples::run_all(&cluster)),
        ["instructions", rest @ ..] => callgrind::instructions(rest),
        ["pg", "start"] => pg::start_by_hand(),
        ["pg", "url"] => pg::print_urls(),
        ["pg", "stop"] => pg::stop_by_hand(),
        ["citus", "start"] => citus::start_by_hand(),
        ["citus", "url"] => citus::print_urls(),
        ["citus", "stop"] => citus::stop_by_hand(),
        ["help" | "--help" | "-h"] | [] => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nxtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, printing it first; fails with the step's name when it fails.
fn run(step: &str, cmd: &mut Command) -> Result {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("\n==> {step}\n    $ {shown}");
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not run `{shown}`: {e}"))?;
    println!("    ({step}: {:.1} s)", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status}): `{shown}`"))
    }
}

/// Runs a command and returns its standard output.
fn output(step: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("{step}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{step} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Each crate with its features. Cargo unifies features across the packages of one invocation
/// (the CLI turns every feature of `tenancy` on), so each crate is checked on its own: with its
/// default features (`tls-rustls` for the SQL crates) and with each feature alone.
const FEATURE_MATRIX: &[(&str, &[&str])] = &[
    ("tenancy-core", &["conformance"]),
    ("tenancy-resolution", &["jwt", "jwks", "axum", "metrics"]),
    ("tenancy-lifecycle", &[]),
    ("tenancy-overrides", &[]),
    ("tenancy-limits", &[]),
    ("tenancy-pg-connect", &["postgres"]),
    (
        "tenancy-isolation-sql",
        &["sql", "migration-audit", "metrics"],
    ),
    ("tenancy-store-sql", &["postgres", "sqlite", "metrics"]),
    (
        "tenancy",
        &[
            "sql",
            "postgres",
            "sqlite",
            "axum",
            "jwt",
            "jwks",
            "limits",
            "migration-audit",
            "metrics",
        ],
    ),
    ("tenancy-admin", &["console"]),
    ("tenancy-cli", &[]),
];

/// The SQL crates whose TLS (feature `tls-rustls`, default) can be turned off, with the feature
/// that connects to PostgreSQL: built without default features, TLS must be absent.
const TLS_OPT_OUT: &[(&str, &str)] = &[
    ("tenancy-pg-connect", "postgres"),
    ("tenancy-isolation-sql", "sql"),
    ("tenancy-store-sql", "postgres"),
    ("tenancy", "sql"),
];

fn clippy(args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args(["clippy", "--all-targets", "--locked"]);
    cmd.args(args);
    cmd.args(["--", "-D", "warnings"]);
    cmd
}

fn ci() -> Result {
    let started = Instant::now();
    run("rustfmt", cargo().args(["fmt", "--all", "--check"]))?;
    run(
        "clippy (workspace, all features)",
        &mut clippy(&["--workspace", "--all-features"]),
    )?;
    for (krate, features) in FEATURE_MATRIX {
        run(
            &format!("clippy ({krate}, no features)"),
            &mut clippy(&["--package", krate]),
        )?;
        for feature in *features {
            run(
                &format!("clippy ({krate}, feature {feature} alone)"),
                &mut clippy(&["--package", krate, "--features", feature]),
            )?;
        }
    }
    for (krate, feature) in TLS_OPT_OUT {
        run(
            &format!("clippy ({krate}, feature {feature} without TLS)"),
            &mut clippy(&[
                "--package",
                krate,
                "--no-default-features",
                "--features",
                feature,
            ]),
        )?;
    }
    dependency_rules()?;
    {
        // Started first: it may build Citus (minutes), before the PostgreSQL servers run.
        let citus = citus::Cluster::start()?;
        let cluster = pg::Cluster::start()?;
        let mut test = cargo();
        test.args(["test", "--workspace", "--all-features", "--locked"]);
        cluster.export(&mut test);
        citus.export(&mut test);
        run("tests and doctests (all features)", &mut test)?;
        for (krate, features) in FEATURE_MATRIX {
            if features.is_empty() {
                continue;
            }
            let mut test = cargo();
            test.args(["test", "--package", krate, "--locked", "--lib", "--tests"]);
            cluster.export(&mut test);
            run(&format!("tests ({krate}, no features)"), &mut test)?;
        }
        examples::run_all(&cluster)?;
    }
    package()?;
    deny()?;
    println!(
        "\nxtask ci: all steps passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Architecture invariants: sqlx appears in the tree only with `sql`, `postgres` or `sqlite`;
/// rustls comes with the SQL features while `tls-rustls` (default) is on, and only then.
fn dependency_rules() -> Result {
    println!("\n==> dependency rules (cargo tree)");
    let tree = |args: &[&str]| {
        let mut cmd = cargo();
        cmd.args(["tree", "--edges", "normal", "--prefix", "none", "--locked"]);
        cmd.args(args);
        output("cargo tree", &mut cmd)
    };
    for krate in [
        "tenancy-core",
        "tenancy-resolution",
        "tenancy-lifecycle",
        "tenancy-overrides",
        "tenancy-limits",
        "tenancy-pg-connect",
        "tenancy",
    ] {
        let deps = tree(&["--package", krate])?;
        if deps.lines().any(|l| l.starts_with("sqlx")) {
            return Err(format!(
                "{krate} without features depends on sqlx; it must not"
            ));
        }
        println!("    {krate} (no features): no sqlx");
    }
    for krate in [
        "tenancy-resolution",
        "tenancy-lifecycle",
        "tenancy-overrides",
        "tenancy-limits",
        "tenancy-admin",
    ] {
        let deps = tree(&["--package", krate, "--all-features"])?;
        if deps.lines().any(|l| l.starts_with("sqlx")) {
            return Err(format!(
                "{krate} depends on sqlx with its features on; it must not"
            ));
        }
    }
    let with_sql = tree(&["--package", "tenancy", "--features", "sql"])?;
    if !with_sql.lines().any(|l| l.starts_with("sqlx")) {
        return Err(
            "tenancy with feature sql does not depend on sqlx; the feature is not wired".into(),
        );
    }
    println!("    tenancy (feature sql): sqlx present");
    let has_rustls = |deps: &str| deps.lines().any(|l| l.starts_with("rustls "));
    if !has_rustls(&with_sql) {
        return Err(
            "tenancy with feature sql has no rustls: TLS to PostgreSQL is not wired".into(),
        );
    }
    println!("    tenancy (feature sql): rustls present");
    for (krate, feature) in TLS_OPT_OUT {
        let deps = tree(&[
            "--package",
            krate,
            "--no-default-features",
            "--features",
            feature,
        ])?;
        if has_rustls(&deps) {
            return Err(format!(
                "{krate} with {feature} but without default features depends on rustls; \
                 tls-rustls must be the only way TLS comes in"
            ));
        }
        println!("    {krate} ({feature}, no default features): no rustls");
    }
    // PostgreSQL's parser is C compiled at build time: only the static migration audit (the CLI,
    // or feature `migration-audit`) brings it in.
    for features in ["", "sql,postgres,sqlite,axum,jwt,jwks,limits,metrics"] {
        let deps = tree(&["--package", "tenancy", "--features", features])?;
        if deps.lines().any(|l| l.starts_with("pg_query")) {
            return Err(format!(
                "tenancy with features [{features}] depends on pg_query; only feature \
                 migration-audit may"
            ));
        }
    }
    println!("    tenancy (every feature but migration-audit): no pg_query");
    Ok(())
}

/// Every crate of [`FEATURE_MATRIX`] packages for crates.io: each package holds its README and
/// both license files, and `cargo package` builds each package from its own tarball, with the
/// unpublished crates of the workspace it depends on packaged beside it. Verification is kept:
/// warm, it rebuilds only the workspace's crates (about 2 min on two cores); cold, it also builds
/// each crate's dependencies with that crate's own features (about 9 min).
fn package() -> Result {
    println!("\n==> package contents (cargo package --list)");
    for (krate, _) in FEATURE_MATRIX {
        let mut list = cargo();
        list.args([
            "package",
            "--list",
            "--allow-dirty",
            "--locked",
            "--package",
            krate,
        ]);
        let files = output("cargo package --list", &mut list)?;
        for needed in ["Cargo.toml", "README.md", "LICENSE-MIT", "LICENSE-APACHE"] {
            if !files.lines().any(|f| f == needed) {
                return Err(format!("the package of {krate} lacks {needed}"));
            }
        }
        println!("    {krate}: README.md, LICENSE-MIT, LICENSE-APACHE");
    }
    forget_extracted_packages()?;
    // Verification has a target directory of its own: cargo takes a registry crate of one name
    // and version for immutable, so the artifacts of an earlier verification would be reused for
    // changed sources. There, the workspace's crates are cleaned before each run (third-party
    // crates stay built), and the main target directory keeps its builds.
    let target = env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("package-verify");
    let mut clean = cargo();
    clean.arg("clean").arg("--target-dir").arg(&target);
    for (krate, _) in FEATURE_MATRIX {
        clean.args(["--package", krate]);
    }
    run("forget earlier package builds", &mut clean)?;
    // `--allow-dirty`: a developer's uncommitted changes are what is checked; CI's clone is clean.
    run(
        "package every crate (cargo package --workspace, verified)",
        cargo()
            .args([
                "package",
                "--workspace",
                "--exclude",
                "xtask",
                "--allow-dirty",
                "--locked",
                "--target-dir",
            ])
            .arg(&target),
    )
}

/// Removes the copies of this workspace's packages that an earlier `cargo package --workspace`
/// extracted under `$CARGO_HOME/registry/src`. Cargo verifies a package against its workspace
/// dependencies through a temporary local registry, and extracts each of them there once per
/// name and version: a later run, with changed sources but the same version, would build against
/// the stale copy. Only directories named after this workspace's crates are touched; cargo
/// extracts them again from the package it has just made.
fn forget_extracted_packages() -> Result {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(sources) = home.map(|h| h.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&sources) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        let Ok(packages) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for package in packages.flatten() {
            let name = package.file_name();
            let name = name.to_string_lossy();
            // `<crate>-<version>`: `tenancy-0.1.0` is a copy of `tenancy`, `tenancy-core-0.1.0`
            // is not.
            let ours = FEATURE_MATRIX.iter().any(|(krate, _)| {
                name.strip_prefix(krate)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
            });
            if ours {
                std::fs::remove_dir_all(package.path()).map_err(|e| {
                    format!("removing the stale copy {}: {e}", package.path().display())
                })?;
            }
        }
    }
    Ok(())
}

fn deny() -> Result {
    let has_deny = Command::new("cargo-deny")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_deny {
        run(
            "install cargo-deny",
            cargo().args(["install", "--locked", "cargo-deny"]),
        )?;
    }
    run(
        "cargo deny (bans, licenses, sources)",
        cargo().args(["deny", "--locked", "check", "bans", "licenses", "sources"]),
    )?;
    // The advisory database is fetched from its git repository; on a machine that reaches only the
    // package registries that fetch fails. That case is reported loudly; any other failure (an
    // advisory that matches) fails the step.
    println!("\n==> cargo deny (advisories)");
    let out = cargo()
        .args(["deny", "--locked", "check", "advisories"])
        .output()
        .map_err(|e| format!("cargo deny advisories: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        println!("    advisories ok");
        Ok(())
    } else if stderr.contains("failed to fetch advisory database") {
        println!(
            "    WARNING: advisories NOT checked: the RustSec advisory database could not be \
             fetched (no network access to it here). Run `cargo deny check advisories` where it is."
        );
        Ok(())
    } else {
        eprint!("{stderr}");
        Err("cargo deny advisories failed".into())
    }
}

fn bench(extra: &[&str]) -> Result {
    // Checked first: the instruction counts run last, after the long criterion benches.
    callgrind::require_valgrind()?;
    {
        let cluster = pg::Cluster::start()?;
        // The Citus benchmarks compare with the PostgreSQL server in the same run.
        let citus = citus::Cluster::start()?;
        let mut cmd = cargo();
        cmd.args(["bench", "--workspace", "--all-features", "--locked"]);
        if !extra.is_empty() {
            cmd.arg("--").args(extra);
        }
        cluster.export(&mut cmd);
        citus.export(&mut cmd);
        run("benchmarks", &mut cmd)?;
    }
    callgrind::instructions(&[])
}
