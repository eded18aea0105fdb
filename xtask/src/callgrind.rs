//! `cargo xtask instructions`: user-space instructions per HTTP request through the tenancy
//! middleware, counted by valgrind's callgrind.
//!
//! The server is the bench target `instructions` of tenancy-resolution (one route, one of the
//! variants in [`VARIANTS`]); this module runs it under callgrind, sends it `n` keep-alive
//! requests over one TCP connection, one at a time, and reads callgrind's instruction total when
//! the server exits. Fixed costs (start-up, runtime, connection) cancel in the difference of two
//! runs: instructions per request = (Ir(n2) - Ir(n1)) / (n2 - n1).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, cargo};

/// The server variants, in the order of the report; the first is the baseline of the ratios.
const VARIANTS: [&str; 7] = [
    "bare",
    "handwritten",
    "layer",
    "layer_guard",
    "handwritten_around",
    "layer_around",
    "domain_around",
];

/// Two request counts per measurement, and how many times each variant is measured.
const DEFAULT_REQUESTS: (u64, u64) = (2_000, 12_000);
const DEFAULT_ROUNDS: usize = 2;

/// Two rounds of one variant that differ by more than this (relative) are reported as noisy.
const REPEAT_TOLERANCE: f64 = 0.005;

/// How long the client waits for one response (callgrind slows the server 50 to 100 times).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Fails with the install instruction when valgrind is not on the `PATH`.
pub(crate) fn require_valgrind() -> Result {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        Ok(())
    } else {
        Err(
            "valgrind not found: the instructions-per-request measurement runs the server under \
             valgrind's callgrind. Install it (`sudo apt-get install valgrind` on Debian/Ubuntu) \
             and run again."
                .into(),
        )
    }
}

/// `cargo xtask instructions [--requests N1,N2] [--rounds R]`.
pub(crate) fn instructions(args: &[&str]) -> Result {
    let (requests, rounds) = parse_args(args)?;
    require_valgrind()?;
    let server = build_server()?;
    // The executable lives in <target>/release/deps/.
    let target = server
        .ancestors()
        .nth(3)
        .ok_or_else(|| format!("unexpected bench executable path {}", server.display()))?;
    let out_dir = target.join("callgrind");
    fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;

    let (n1, n2) = requests;
    println!(
        "\n==> instructions per request (callgrind), {rounds} rounds of {n1} and {n2} requests \
         per variant\n    outputs in {}",
        out_dir.display()
    );
    // per_request[variant][round]
    let mut per_request = vec![Vec::with_capacity(rounds); VARIANTS.len()];
    for round in 1..=rounds {
        for (variant, figures) in VARIANTS.iter().zip(&mut per_request) {
            let ir1 = measure(
                &server,
                variant,
                n1,
                &out_dir.join(format!("{variant}-{n1}")),
            )?;
            let ir2 = measure(
                &server,
                variant,
                n2,
                &out_dir.join(format!("{variant}-{n2}")),
            )?;
            if ir2 <= ir1 {
                return Err(format!(
                    "{variant}: {n2} requests cost no more instructions than {n1} \
                     ({ir2} <= {ir1}); the server did not serve them"
                ));
            }
            let figure = (ir2 - ir1) as f64 / (n2 - n1) as f64;
            println!(
                "    round {round} {variant:<18} Ir({n1}) = {ir1:>14}  Ir({n2}) = {ir2:>14}  \
                 -> {figure:.1} instructions/request"
            );
            figures.push(figure);
        }
    }
    report(&per_request);
    Ok(())
}

fn parse_args(args: &[&str]) -> Result<((u64, u64), usize)> {
    let mut requests = DEFAULT_REQUESTS;
    let mut rounds = DEFAULT_ROUNDS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match (*arg, args.next()) {
            ("--requests", Some(value)) => {
                let parsed = value
                    .split_once(',')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                requests = match parsed {
                    Some((n1, n2)) if 0 < n1 && n1 < n2 => (n1, n2),
                    _ => {
                        return Err(format!(
                            "--requests takes two counts N1,N2 with 0 < N1 < N2, not {value:?}"
                        ));
                    }
                };
            }
            ("--rounds", Some(value)) => {
                rounds = match value.parse() {
                    Ok(r) if r >= 1 => r,
                    _ => return Err(format!("--rounds takes a count >= 1, not {value:?}")),
                };
            }
            _ => {
                return Err(format!(
                    "unknown argument {arg:?}: usage `cargo xtask instructions \
                     [--requests N1,N2] [--rounds R]`"
                ));
            }
        }
    }
    Ok((requests, rounds))
}

/// Builds the bench target `instructions` (bench profile) and returns its executable.
fn build_server() -> Result<PathBuf> {
    let step = "build the instructions server";
    println!(
        "\n==> {step}\n    $ cargo bench --package tenancy-resolution --bench instructions --no-run"
    );
    let out = cargo()
        .args([
            "bench",
            "--package",
            "tenancy-resolution",
            "--bench",
            "instructions",
            "--no-run",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{step}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{step} failed ({})", out.status));
    }
    // One JSON message per line; the artifact of the bench target names its executable.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            line.contains(r#""reason":"compiler-artifact""#)
                && line.contains(r#""kind":["bench"]"#)
                && line.contains(r#""name":"instructions""#)
        })
        .find_map(|line| json_string_field(line, "executable"))
        .map(PathBuf::from)
        .ok_or_else(|| format!("{step}: cargo reported no executable for the bench target"))
}

/// The value of the first `"field":"..."` string in one line of JSON (escapes decoded).
fn json_string_field(line: &str, field: &str) -> Option<String> {
    let start = line.find(&format!("\"{field}\":\""))? + field.len() + 4;
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

/// Runs the `variant` server under callgrind, sends it `n` requests, returns the total `Ir`.
/// `out` is the output path without extension (`.out` for callgrind, `.log` for valgrind).
fn measure(server: &Path, variant: &str, n: u64, out: &Path) -> Result<u64> {
    let (data, log) = (out.with_extension("out"), out.with_extension("log"));
    let started = Instant::now();
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", data.display()))
        .arg(format!("--log-file={}", log.display()))
        .arg(server)
        .arg(variant)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{variant}: could not start valgrind: {e}"))?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout pipe")?);
    let mut line = String::new();
    let driven = stdout
        .read_line(&mut line)
        .map_err(|e| format!("read the server's address: {e}"))
        .and_then(|_| match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["listening", address, "tenant", tenant] => drive(variant, address, tenant, n),
            _ => Err(format!(
                "the server announced {line:?} instead of `listening <address> tenant <id>` \
                 (valgrind's log: {})",
                log.display()
            )),
        });
    if let Err(message) = driven {
        // The client failed: the server would wait for requests forever.
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{variant}, {n} requests: {message}"));
    }
    let status = child
        .wait()
        .map_err(|e| format!("{variant}: wait for the server: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{variant}: the server under callgrind exited with {status} (valgrind's log: {})",
            log.display()
        ));
    }
    let total = total_instructions(&data)?;
    println!(
        "    {variant:<18} {n:>6} requests: {total:>14} Ir ({:.1} s under callgrind)",
        started.elapsed().as_secs_f64()
    );
    Ok(total)
}

/// The client: one connection; first a request without a tenant, which every variant but `bare`
/// must refuse with 403 (the middleware is in the path), then `n` requests naming the tenant,
/// each of which must be a 200 `ok` (the tenant resolved: no fast path through a rejection).
fn drive(variant: &str, address: &str, tenant: &str, n: u64) -> Result {
    let stream = TcpStream::connect(address).map_err(|e| format!("connect to {address}: {e}"))?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(RESPONSE_TIMEOUT)))
        .map_err(|e| format!("configure the connection: {e}"))?;
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("clone the connection: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut body = Vec::new();

    let anonymous = b"GET /whoami HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let expected = if variant == "bare" { 200 } else { 403 };
    writer
        .write_all(anonymous)
        .map_err(|e| format!("send: {e}"))?;
    let status = read_response(&mut reader, &mut body)?;
    if status != expected {
        return Err(format!(
            "a request without a tenant got {status}, expected {expected}: \
             the variant is not wired as it should be"
        ));
    }

    // The `domain` variant names the tenant by its custom domain, the others by the header.
    let request = if variant.starts_with("domain") {
        "GET /whoami HTTP/1.1\r\nhost: acme.example\r\n\r\n".to_owned()
    } else {
        format!("GET /whoami HTTP/1.1\r\nhost: 127.0.0.1\r\nx-tenant-id: {tenant}\r\n\r\n")
    };
    for i in 1..=n {
        writer
            .write_all(request.as_bytes())
            .map_err(|e| format!("send request {i}: {e}"))?;
        let status = read_response(&mut reader, &mut body)?;
        if status != 200 || body != b"ok" {
            return Err(format!(
                "request {i} of {n} with tenant {tenant} got {status} {:?}, expected 200 \"ok\": \
                 the tenant did not resolve, so the figure would not measure the request path",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    Ok(())
}

/// Reads one HTTP/1.1 response with a `content-length`; returns its status, its body in `body`.
fn read_response(reader: &mut impl BufRead, body: &mut Vec<u8>) -> Result<u16> {
    let mut line = String::new();
    let mut read_line = |line: &mut String| {
        line.clear();
        match reader.read_line(line) {
            Ok(0) => Err("the server closed the connection".to_owned()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read a response: {e}")),
        }
    };
    read_line(&mut line)?;
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP/1.1 status line: {line:?}"))?;
    let mut length = None;
    loop {
        read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let length = length.ok_or("a response without a valid content-length")?;
    body.resize(length, 0);
    reader
        .read_exact(body)
        .map_err(|e| format!("read a response body: {e}"))?;
    Ok(status)
}

/// The total of the `Ir` event in a callgrind output file (its `totals:` or `summary:` line).
fn total_instructions(path: &Path) -> Result<u64> {
    let text = fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    text.lines()
        .find_map(|line| {
            let rest = line
                .strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| format!("{} has no totals: line", path.display()))
}

/// Prints the table: each variant's figure in every round, their spread, the ratio to `bare`.
fn report(per_request: &[Vec<f64>]) {
    let mean = |figures: &[f64]| figures.iter().sum::<f64>() / figures.len() as f64;
    let baseline = mean(&per_request[0]);
    println!("\ninstructions per request (user space, callgrind Ir):\n");
    let rounds = per_request[0].len();
    let header: String = (1..=rounds)
        .map(|r| format!(" {:>10}", format!("round {r}")))
        .collect();
    println!(
        "    {:<18}{header} {:>8} {:>9}",
        "variant", "spread", "/ bare"
    );
    let mut noisy = Vec::new();
    for (variant, figures) in VARIANTS.iter().zip(per_request) {
        let (min, max) = figures
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &f| (lo.min(f), hi.max(f)));
        let spread = (max - min) / min;
        if spread > REPEAT_TOLERANCE {
            noisy.push(*variant);
        }
        let cells: String = figures.iter().map(|f| format!(" {f:>10.1}")).collect();
        println!(
            "    {variant:<18}{cells} {:>7.3}% {:>8.3}x",
            spread * 100.0,
            mean(figures) / baseline
        );
    }
    if noisy.is_empty() {
        println!(
            "\n    every variant repeats within {:.1}%",
            REPEAT_TOLERANCE * 100.0
        );
    } else {
        println!(
            "\n    WARNING: {} differ(s) between rounds by more than {:.1}%: rerun, with more \
             requests (--requests)",
            noisy.join(", "),
            REPEAT_TOLERANCE * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_read_from_cargos_json_with_escapes_decoded() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"instructions"},"executable":"C:\\t\\\"x\\\"\\instructions","fresh":true}"#;
        assert_eq!(
            json_string_field(line, "executable").as_deref(),
            Some(r#"C:\t\"x\"\instructions"#)
        );
        assert_eq!(json_string_field(line, "missing"), None);
    }

    #[test]
    fn a_response_is_read_to_the_end_of_its_content_length() {
        let mut wire: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let mut body = Vec::new();
        assert_eq!(read_response(&mut wire, &mut body), Ok(403));
        assert_eq!(body, b"no!");
        assert_eq!(read_response(&mut wire, &mut body), Ok(200));
        assert_eq!(body, b"ok");
        assert!(read_response(&mut wire, &mut body).is_err());
    }

    #[test]
    fn a_response_without_content_length_is_refused() {
        let mut wire: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let error = read_response(&mut wire, &mut Vec::new()).unwrap_err();
        assert!(error.contains("content-length"), "{error}");
    }

    #[test]
    fn the_total_is_read_from_the_summary_or_totals_line() {
        let dir = std::env::temp_dir().join(format!("xtask-callgrind-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.out");
        fs::write(
            &path,
            "version: 1\nevents: Ir\nfn=main\n1 5\nsummary: 12345\ntotals: 12345\n",
        )
        .unwrap();
        assert_eq!(total_instructions(&path), Ok(12345));
        fs::write(&path, "events: Ir\n").unwrap();
        assert!(total_instructions(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn request_counts_must_grow_and_rounds_be_positive() {
        assert_eq!(
            parse_args(&["--requests", "10,20", "--rounds", "3"]),
            Ok(((10, 20), 3))
        );
        assert_eq!(parse_args(&[]), Ok((DEFAULT_REQUESTS, DEFAULT_ROUNDS)));
        assert!(parse_args(&["--requests", "20,10"]).is_err());
        assert!(parse_args(&["--requests", "0,10"]).is_err());
        assert!(parse_args(&["--rounds", "0"]).is_err());
        assert!(parse_args(&["--rounds"]).is_err());
    }
}
