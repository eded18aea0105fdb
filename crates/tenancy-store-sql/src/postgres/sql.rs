//! The PostgreSQL store's SQL, with the validated, quoted schema name embedded once at start-up.

use std::sync::Arc;

use crate::config::Identifier;
use crate::migrate::Migration;

/// The embedded migrations (`{schema}` is replaced by the quoted schema name).
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "tenants and config overrides",
    sql: r"
CREATE TABLE {schema}.tenants (
    id uuid PRIMARY KEY,
    slug text NOT NULL CONSTRAINT tenants_slug_key UNIQUE,
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ('provisioning', 'active', 'inactive', 'suspended')),
    status_reason text,
    plan text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX tenants_active_idx ON {schema}.tenants (id) WHERE status = 'active';
CREATE TABLE {schema}.config (
    tenant_id uuid NOT NULL REFERENCES {schema}.tenants (id) ON DELETE CASCADE,
    key text NOT NULL,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
",
}];

/// The unique constraint on `tenants.slug`.
pub(super) const SLUG_CONSTRAINT: &str = "tenants_slug_key";
/// The primary key of `tenants`.
pub(super) const ID_CONSTRAINT: &str = "tenants_pkey";

const SELECT_TENANTS: &str = "SELECT t.id, t.slug, t.name, t.status, t.status_reason, t.plan, \
    t.metadata::text AS metadata, \
    COALESCE((SELECT json_agg(json_build_array(c.key, c.value::text) ORDER BY c.key)::text \
              FROM {schema}.config c WHERE c.tenant_id = t.id), '[]') AS config, \
    t.created_at, t.updated_at FROM {schema}.tenants t ";

/// A statement text, cheap to hand to `sqlx::query` for every call.
pub(super) type Sql = Arc<str>;

/// Every statement of the store, for one schema.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) prepare_schema: Sql,
    pub(super) current_version: Sql,
    pub(super) record_version: Sql,
    pub(super) get_by_id: Sql,
    pub(super) get_by_id_for_update: Sql,
    pub(super) get_by_slug: Sql,
    pub(super) list_first: Sql,
    pub(super) list_after: Sql,
    pub(super) insert_tenant: Sql,
    pub(super) upsert_config: Sql,
    pub(super) update_tenant: Sql,
    pub(super) set_status: Sql,
    pub(super) set_status_reason: Sql,
    pub(super) status_of: Sql,
    pub(super) exists: Sql,
    pub(super) get_config: Sql,
    pub(super) get_config_for_update: Sql,
    pub(super) get_all_config: Sql,
    pub(super) delete_config: Sql,
}

impl Statements {
    pub(super) fn new(schema: &Identifier) -> Self {
        let quoted = schema.quoted();
        let sql = |text: &str| -> Sql { text.replace("{schema}", &quoted).into() };
        let select = |tail: &str| sql(&format!("{SELECT_TENANTS}{tail}"));
        Self {
            prepare_schema: sql("CREATE SCHEMA IF NOT EXISTS {schema}; \
                 CREATE TABLE IF NOT EXISTS {schema}.schema_version (\
                 version bigint PRIMARY KEY, description text NOT NULL, \
                 applied_at timestamptz NOT NULL DEFAULT now())"),
            current_version: sql("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version"),
            record_version: sql(
                "INSERT INTO {schema}.schema_version (version, description) VALUES ($1, $2)",
            ),
            get_by_id: select("WHERE t.id = $1"),
            get_by_id_for_update: select("WHERE t.id = $1 FOR UPDATE OF t"),
            get_by_slug: select("WHERE t.slug = $1"),
            // Two statements rather than `($1 IS NULL OR t.id > $1)`, so that both plans walk the
            // primary key from the right place.
            list_first: select("WHERE (NOT $1 OR t.status = 'active') ORDER BY t.id LIMIT $2"),
            list_after: select(
                "WHERE t.id > $1 AND (NOT $2 OR t.status = 'active') ORDER BY t.id LIMIT $3",
            ),
            insert_tenant: sql("INSERT INTO {schema}.tenants \
                 (id, slug, name, status, status_reason, plan, metadata, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)"),
            upsert_config: sql(
                "INSERT INTO {schema}.config (tenant_id, key, value) VALUES ($1, $2, $3::jsonb) \
                 ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            ),
            update_tenant: sql(
                "UPDATE {schema}.tenants SET slug = $2, name = $3, plan = $4, metadata = $5::jsonb, \
                 updated_at = $6 WHERE id = $1",
            ),
            set_status: sql(
                "UPDATE {schema}.tenants SET status = $3, status_reason = $4, updated_at = $5 \
                 WHERE id = $1 AND status = $2",
            ),
            set_status_reason: sql(
                "UPDATE {schema}.tenants SET status_reason = $3, updated_at = $4 \
                 WHERE id = $1 AND status = $2",
            ),
            status_of: sql("SELECT status FROM {schema}.tenants WHERE id = $1"),
            exists: sql("SELECT 1 FROM {schema}.tenants WHERE id = $1"),
            get_config: sql(
                "SELECT value::text FROM {schema}.config WHERE tenant_id = $1 AND key = $2",
            ),
            get_config_for_update: sql(
                "SELECT value::text FROM {schema}.config WHERE tenant_id = $1 AND key = $2 FOR UPDATE",
            ),
            get_all_config: sql(
                "SELECT key, value::text FROM {schema}.config WHERE tenant_id = $1 ORDER BY key",
            ),
            delete_config: sql(
                "DELETE FROM {schema}.config WHERE tenant_id = $1 AND key = $2 RETURNING value::text",
            ),
        }
    }

    /// A migration's SQL for this schema.
    pub(super) fn migration(schema: &Identifier, migration: &Migration) -> String {
        migration.sql.replace("{schema}", &schema.quoted())
    }
}
