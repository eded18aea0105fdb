//! A dedicated PostgreSQL database per test on the throwaway cluster, so that tests never see each
//! other and can make their database unreachable.

use sqlx::{AssertSqlSafe, PgPool};
use tenancy::core::{TenantId, conformance};

/// A database created for one test, dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub admin: PgPool,
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a database URL has a path");
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

impl TestDb {
    pub async fn create(purpose: &str) -> Self {
        let admin = PgPool::connect(&conformance::test_database_url())
            .await
            .unwrap();
        let name = format!("tenancy_{purpose}_{}", TenantId::new().simple());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .unwrap();
        let url = with_database(&conformance::test_database_url(), &name);
        Self { name, url, admin }
    }

    /// The database's URL as the fixture's application role (password = its name), after granting
    /// it `CREATE` on the database (for the store's schema).
    pub async fn app_role_url(&self) -> String {
        let role = conformance::test_app_role();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "GRANT CREATE ON DATABASE \"{}\" TO \"{role}\"",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let host = rest.split_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{role}:{role}@{host}")
    }

    /// Runs `sql` in the database as the superuser (the owner of what it creates).
    pub async fn run_as_owner(&self, sql: &str) {
        let pool = PgPool::connect(&self.url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    /// Allows or refuses new connections to the database.
    pub async fn allow_connections(&self, allow: bool) {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
    }

    /// Terminates the database's backends whose application name is `application` (all when
    /// `None`); how many.
    pub async fn terminate(&self, application: Option<&str>) -> usize {
        let rows = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() \
             AND ($2::text IS NULL OR application_name = $2)",
        )
        .bind(&self.name)
        .bind(application)
        .fetch_all(&self.admin)
        .await
        .unwrap();
        rows.len()
    }

    pub async fn drop_db(self) {
        self.allow_connections(true).await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
        self.admin.close().await;
    }
}
