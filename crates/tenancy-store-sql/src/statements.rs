//! Every statement of the store, written once for both backends; a [`Dialect`] fills in what
//! differs (table names, JSON casts, row locks).

use std::sync::Arc;

use sqlx::AssertSqlSafe;

/// A statement text, cheap to hand to `sqlx::query` for every call.
pub(crate) type Sql = Arc<str>;

/// A statement ready for `sqlx::query`: its text is built at start-up from validated identifiers.
pub(crate) fn q(sql: &Sql) -> AssertSqlSafe<Sql> {
    AssertSqlSafe(Arc::clone(sql))
}

/// What one backend's SQL needs in the shared statement templates.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// The tenants table (`{tenants}`), quoted and qualified as needed.
    pub(crate) tenants: String,
    /// The config overrides table (`{config}`).
    pub(crate) config: String,
    /// The domains table (`{domains}`).
    pub(crate) domains: String,
    /// Appended to a text parameter stored in a JSON column (`{json}`).
    pub(crate) to_json: &'static str,
    /// Appended to a JSON column read as text (`{text}`).
    pub(crate) to_text: &'static str,
    /// Appended to a read that the transaction goes on to change (`{lock}`).
    pub(crate) lock: &'static str,
    /// Appended to the config upsert's `SET` (`{touch}`).
    pub(crate) touch: &'static str,
}

const SELECT_TENANTS: &str = "SELECT t.id, t.slug, t.name, t.status, t.status_reason, t.plan, \
    t.metadata{text} AS metadata, t.created_at, t.updated_at FROM {tenants} t ";

/// Every statement of the store.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) get_by_id: Sql,
    pub(crate) get_by_id_for_update: Sql,
    pub(crate) get_by_slug: Sql,
    pub(crate) list_first: Sql,
    pub(crate) list_after: Sql,
    pub(crate) insert_tenant: Sql,
    pub(crate) update_tenant: Sql,
    pub(crate) set_status: Sql,
    pub(crate) set_status_reason: Sql,
    pub(crate) status_of: Sql,
    pub(crate) lock_tenant: Sql,
    pub(crate) get_config: Sql,
    pub(crate) get_config_for_update: Sql,
    pub(crate) get_all_config: Sql,
    pub(crate) upsert_config: Sql,
    pub(crate) delete_config: Sql,
    pub(crate) get_by_domain: Sql,
    pub(crate) list_domains: Sql,
    pub(crate) domain_owner: Sql,
    pub(crate) insert_domain: Sql,
    pub(crate) clear_primary: Sql,
    pub(crate) set_primary: Sql,
    pub(crate) delete_domain: Sql,
    pub(crate) oldest_domain: Sql,
}

impl Statements {
    pub(crate) fn new(dialect: &Dialect) -> Self {
        let sql = |text: &str| -> Sql {
            text.replace("{tenants}", &dialect.tenants)
                .replace("{config}", &dialect.config)
                .replace("{domains}", &dialect.domains)
                .replace("{json}", dialect.to_json)
                .replace("{text}", dialect.to_text)
                .replace("{lock}", dialect.lock)
                .replace("{touch}", dialect.touch)
                .into()
        };
        let select = |tail: &str| sql(&format!("{SELECT_TENANTS}{tail}"));
        Self {
            get_by_id: select("WHERE t.id = $1"),
            get_by_id_for_update: select("WHERE t.id = $1{lock}"),
            get_by_slug: select("WHERE t.slug = $1"),
            // Two statements rather than `($1 IS NULL OR t.id > $1)`, so that both plans walk the
            // primary key from the right place.
            list_first: select("WHERE (NOT $1 OR t.status = 'active') ORDER BY t.id LIMIT $2"),
            list_after: select(
                "WHERE t.id > $1 AND (NOT $2 OR t.status = 'active') ORDER BY t.id LIMIT $3",
            ),
            insert_tenant: sql("INSERT INTO {tenants} \
                 (id, slug, name, status, status_reason, plan, metadata, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7{json}, $8, $9)"),
            update_tenant: sql(
                "UPDATE {tenants} SET slug = $2, name = $3, plan = $4, metadata = $5{json}, \
                 updated_at = $6 WHERE id = $1",
            ),
            set_status: sql(
                "UPDATE {tenants} SET status = $3, status_reason = $4, updated_at = $5 \
                 WHERE id = $1 AND status = $2",
            ),
            set_status_reason: sql("UPDATE {tenants} SET status_reason = $3, updated_at = $4 \
                 WHERE id = $1 AND status = $2"),
            status_of: sql("SELECT status FROM {tenants} WHERE id = $1"),
            // Taken by every config write of a tenant first: writes of a key not stored yet have no
            // row to lock, so they serialize on the tenant's.
            lock_tenant: sql("SELECT 1 FROM {tenants} WHERE id = $1{lock}"),
            get_config: sql("SELECT value{text} FROM {config} WHERE tenant_id = $1 AND key = $2"),
            get_config_for_update: sql(
                "SELECT value{text} FROM {config} WHERE tenant_id = $1 AND key = $2{lock}",
            ),
            get_all_config: sql(
                "SELECT key, value{text} FROM {config} WHERE tenant_id = $1 ORDER BY key",
            ),
            upsert_config: sql(
                "INSERT INTO {config} (tenant_id, key, value) VALUES ($1, $2, $3{json}) \
                 ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value{touch}",
            ),
            delete_config: sql(
                "DELETE FROM {config} WHERE tenant_id = $1 AND key = $2 RETURNING value{text}",
            ),
            get_by_domain: select("JOIN {domains} d ON d.tenant_id = t.id WHERE d.domain = $1"),
            list_domains: sql("SELECT domain, is_primary, created_at FROM {domains} \
                 WHERE tenant_id = $1 ORDER BY is_primary DESC, domain"),
            domain_owner: sql(
                "SELECT tenant_id, is_primary FROM {domains} WHERE domain = $1{lock}",
            ),
            insert_domain: sql(
                "INSERT INTO {domains} (domain, tenant_id, is_primary, created_at) \
                 VALUES ($1, $2, $3, $4)",
            ),
            // Before `set_primary`: one primary per tenant is a unique index.
            clear_primary: sql(
                "UPDATE {domains} SET is_primary = false WHERE tenant_id = $1 AND is_primary",
            ),
            set_primary: sql(
                "UPDATE {domains} SET is_primary = true WHERE tenant_id = $1 AND domain = $2",
            ),
            delete_domain: sql("DELETE FROM {domains} WHERE tenant_id = $1 AND domain = $2"),
            oldest_domain: sql("SELECT domain FROM {domains} WHERE tenant_id = $1 \
                 ORDER BY created_at, domain LIMIT 1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let dialect = Dialect {
            tenants: "\"order\".tenants".into(),
            config: "\"order\".config".into(),
            domains: "\"order\".domains".into(),
            to_json: "::jsonb",
            to_text: "::text",
            lock: " FOR UPDATE",
            touch: ", updated_at = now()",
        };
        let sql = Statements::new(&dialect);
        assert!(sql.get_by_id.contains("FROM \"order\".tenants t"));
        assert!(sql.get_by_id_for_update.ends_with("$1 FOR UPDATE"));
        assert!(
            sql.upsert_config
                .ends_with("value = excluded.value, updated_at = now()")
        );
        let all = format!("{sql:?}");
        for placeholder in [
            "{tenants}",
            "{config}",
            "{domains}",
            "{json}",
            "{text}",
            "{lock}",
            "{touch}",
        ] {
            assert!(!all.contains(placeholder), "{all}");
        }
    }
}
