//! The `tenancy` command: a demo multi-tenant server, tenant administration, and schema
//! migrations across tenants.
//!
//! - `tenancy demo` serves a tenant-aware application on the tenancy stack (SQLite file
//!   `tenancy-demo.db` by default), seeded with three tenants; [`demo::start`] runs the same server
//!   in-process (tests start it on port 0).
//! - `tenancy tenants create|list|show|update|activate|suspend|deactivate`, `tenancy config
//!   get|set|unset|effective`: administration against `--database` (tables, or `--json`).
//! - `tenancy schemas migrate|status`, `tenancy audit`: PostgreSQL tenant schemas and row-level
//!   security.
//! - `tenancy placement show|move|isolate|rebalance`, `tenancy stats`: tenants on a Citus
//!   cluster.
//!
//! The demo's admin API, under `/admin`, needs `Authorization: Bearer <admin token>`:
//! `GET|POST /admin/tenants` (create from `{"slug", "name", "plan"?}`: 201 with the tenant),
//! `GET|PATCH /admin/tenants/{id or slug}`, `POST /admin/tenants/{id}/activate|suspend|deactivate`
//! (suspend takes `{"reason"}`), `PUT|DELETE /admin/tenants/{id}/config/{key}` (the body of `PUT`
//! is the JSON value). Invalid bodies are answered 400 with a JSON message; nothing is stored.
//!
//! The binary's `main` is [`run`]:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     tenancy_cli::run(std::env::args_os())
//! }
//! ```

mod auth;
mod cli;
mod commands;
pub mod demo;
mod error;
mod exporter;
mod output;
mod placement;
pub mod serve;
mod stack;
mod top;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

pub use error::CliError;

use crate::cli::{Cli, Command};
use crate::commands::{Output, Target};

/// Parses `args` (the program name first), runs the command and returns its exit status: 0, 2 for
/// bad arguments, 1 for failures; messages go to stderr.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let demo = matches!(cli.command, Command::Demo(_));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(if demo {
            "info,sqlx=warn"
        } else {
            // A placement move is a slow statement by nature: not worth a warning.
            "warn,sqlx::query=error"
        })
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| output::Lossy(std::io::stderr()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::err_line(&format!("tenancy: cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::err_line(&format!("tenancy: {e}"));
            e.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let target = Target {
        database: cli.database.as_deref(),
        config: cli.config.as_deref(),
    };
    let out = Output { json: cli.json };
    match cli.command {
        Command::Demo(args) => {
            if cli.config.is_some() {
                return Err(CliError::Usage(
                    "the demo configures itself: --config applies to the admin commands".into(),
                ));
            }
            let mut options = demo::DemoOptions::new(
                args.addr,
                cli.database.as_deref().unwrap_or(cli::DEFAULT_DATABASE),
            );
            options.admin_token = args.admin_token;
            options.jwt_secret = args.jwt_secret;
            demo::run(options).await
        }
        Command::Tenants(command) => commands::tenants(command, target, out).await,
        Command::Domains(command) => commands::domains(command, target, out).await,
        Command::Config(command) => commands::config(command, target, out).await,
        Command::Schemas(command) => commands::schemas(command, target, out).await,
        Command::Audit(args) => commands::audit(args, target, out).await,
        Command::Placement(command) => placement::placement(command, target, out).await,
        Command::Stats(args) => placement::stats(&args, target, out).await,
        Command::Top(args) => {
            top::run(
                &args.url,
                usize::try_from(args.limit).unwrap_or(usize::MAX),
                args.watch,
                args.count,
                out.json,
            )
            .await
        }
    }
}
