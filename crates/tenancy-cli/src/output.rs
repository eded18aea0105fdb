//! Human-readable tables and JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;
use tenancy::core::TenantInfo;

use crate::error::CliError;

/// A plain text table: a header row, then one row per item, columns padded to their widest cell.
pub(crate) fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let _ = write!(text, "{cell:<width$}", width = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// One line per tenant: id, slug, status, plan, name.
pub(crate) fn tenant_table(tenants: &[TenantInfo]) -> String {
    let rows: Vec<[String; 5]> = tenants
        .iter()
        .map(|t| {
            [
                t.id.to_string(),
                t.slug.to_string(),
                t.status.to_string(),
                t.plan.clone().unwrap_or_else(|| "-".into()),
                t.name.clone(),
            ]
        })
        .collect();
    table(["ID", "SLUG", "STATUS", "PLAN", "NAME"], &rows)
}

/// Every field of one tenant, one per line.
pub(crate) fn tenant_details(tenant: &TenantInfo) -> String {
    let mut rows = vec![
        ["id".to_owned(), tenant.id.to_string()],
        ["slug".to_owned(), tenant.slug.to_string()],
        ["name".to_owned(), tenant.name.clone()],
        ["status".to_owned(), tenant.status.to_string()],
    ];
    if let Some(reason) = &tenant.status_reason {
        rows.push(["status reason".to_owned(), reason.clone()]);
    }
    rows.push([
        "plan".to_owned(),
        tenant.plan.clone().unwrap_or_else(|| "-".into()),
    ]);
    rows.push(["created".to_owned(), tenant.created_at.to_rfc3339()]);
    rows.push(["updated".to_owned(), tenant.updated_at.to_rfc3339()]);
    if !tenant.metadata.is_empty() {
        rows.push([
            "metadata".to_owned(),
            serde_json::Value::Object(tenant.metadata.clone()).to_string(),
        ]);
    }
    table(["FIELD", "VALUE"], &rows)
}

/// Pretty JSON of `value`, with a final newline.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| CliError::Findings(format!("rendering JSON failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let out = table(
            ["A", "LONGER"],
            &[["xyz".into(), "1".into()], ["x".into(), "22".into()]],
        );
        assert_eq!(out, "A    LONGER\nxyz  1\nx    22\n");
    }
}

/// A writer that reports every write as done, whatever happens to it: logging and messages must
/// never take a request or the shutdown down because stderr or stdout was closed or filled (the
/// standard `eprintln!` panics then, and the log formatter reports its own failures with it).
#[derive(Debug)]
pub(crate) struct Lossy<W>(pub(crate) W);

impl<W: std::io::Write> std::io::Write for Lossy<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Prints `text` on stdout, best effort (see [`Lossy`]).
pub(crate) fn out(text: &str) {
    use std::io::Write as _;
    let _ = Lossy(std::io::stdout().lock()).write_all(text.as_bytes());
}

/// Prints `text` and a new line on stderr, best effort (see [`Lossy`]).
pub(crate) fn err_line(text: &str) {
    use std::io::Write as _;
    let mut stderr = Lossy(std::io::stderr().lock());
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.write_all(b"\n");
}
