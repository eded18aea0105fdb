//! The demo binary as a child process: started on a database, spoken to over HTTP, stopped by a
//! signal.
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

use serde_json::Value;

/// The admin token the demo runs with in these tests.
pub const ADMIN_TOKEN: &str = "token-from-the-environment";

/// The demo binary on `database`, its stderr sent to `stderr`; returns it with its address, once its
/// banner (read from its stdout) says it serves.
pub fn spawn_demo(
    database: &str,
    stderr: std::process::Stdio,
) -> (std::process::Child, String, String) {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["demo", "--addr", "127.0.0.1:0"])
        .env("TENANCY_DATABASE_URL", database)
        .env("TENANCY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.contains("Ctrl-C stops the server") {
        assert_ne!(stdout.read_line(&mut banner).unwrap(), 0, "{banner}");
    }
    let addr = banner
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("tenancy demo listening on http://"))
        .unwrap()
        .to_owned();
    (child, addr, banner)
}

/// One HTTP/1.1 exchange with the demo: the whole response.
pub fn http(addr: &str, request: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "{request}").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Sends `signal` and waits, at most 30 s, for the demo to exit.
pub fn stop_demo(child: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Bounded: a demo that does not stop is killed and the test fails.
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("the demo did not stop within 30 s of {signal}");
}

/// Runs the `tenancy` command on `database` with `--json`: its exit status, its output as JSON
/// (`null` when it is not), and its stderr.
pub fn tenancy(database: &str, args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .arg("--json")
        .args(args)
        .env("TENANCY_DATABASE_URL", database)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap(), json, stderr)
}
