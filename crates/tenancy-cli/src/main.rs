//! The `tenancy` command; everything is in the library (`tenancy_cli::run`).

fn main() -> std::process::ExitCode {
    tenancy_cli::run(std::env::args_os())
}
