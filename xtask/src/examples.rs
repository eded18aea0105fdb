//! The examples step: every example of the workspace is built once, then each binary is run from
//! the target directory (no `cargo run`, so no second feature resolution and no rebuild check per
//! example). An example checks its own answers and exits non-zero on a mismatch; the PostgreSQL
//! ones use the fixture's server (`TENANCY_TEST_DATABASE_URL`).

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Result, cargo, pg, root};

/// How long one example may run before it is stopped and the step fails: far above what any
/// takes (a second or two), only so that a hung example cannot hang CI.
const WATCHDOG: Duration = Duration::from_secs(300);

/// Builds every example (all features), then runs each one against `cluster`.
pub(crate) fn run_all(cluster: &pg::Cluster) -> Result {
    println!("\n==> build the examples");
    let started = Instant::now();
    let out = cargo()
        .args([
            "build",
            "--workspace",
            "--examples",
            "--all-features",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("build the examples: {e}"))?;
    if !out.status.success() {
        return Err(format!("build the examples failed ({})", out.status));
    }
    println!(
        "    (build the examples: {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let mut binaries: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter(|l| l.contains(r#""kind":["example"]"#))
        .filter_map(|l| json_string(l, "executable"))
        .collect();
    binaries.sort();
    if binaries.is_empty() {
        return Err("the examples build produced no example binary".into());
    }
    for binary in &binaries {
        let name = binary.rsplit('/').next().unwrap_or(binary);
        let mut cmd = Command::new(binary);
        cmd.current_dir(root());
        cluster.export(&mut cmd);
        // The fixture, not whatever server the environment names.
        cmd.env_remove("DATABASE_URL");
        run_watched(&format!("example {name}"), &mut cmd)?;
    }
    println!(
        "    {} examples ran and checked their answers",
        binaries.len()
    );
    Ok(())
}

/// Runs `cmd` to completion, stopping it after [`WATCHDOG`].
fn run_watched(step: &str, cmd: &mut Command) -> Result {
    println!(
        "\n==> {step}\n    $ {}",
        cmd.get_program().to_string_lossy()
    );
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("{step}: {e}"))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("{step}: {e}"))? {
            break status;
        }
        if started.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{step} was still running after {} s and was stopped",
                WATCHDOG.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(50));
    };
    println!("    ({step}: {:.1} s)", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

/// The string value of `"field":"..."` in one line of cargo's JSON messages (`\"` and `\\`
/// unescaped; a path with other escapes is not expected).
fn json_string(line: &str, field: &str) -> Option<String> {
    let start = line.find(&format!(r#""{field}":""#))? + field.len() + 4;
    let mut value = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn reads_a_string_field_of_a_cargo_message() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["example"],"name":"a"},"executable":"/t/debug/examples/a\"b\\c","fresh":true}"#;
        assert_eq!(
            json_string(line, "executable").as_deref(),
            Some(r#"/t/debug/examples/a"b\c"#)
        );
        assert_eq!(json_string(r#"{"executable":null}"#, "executable"), None);
        assert_eq!(json_string(r#"{"executable":"/cut"#, "executable"), None);
    }
}
