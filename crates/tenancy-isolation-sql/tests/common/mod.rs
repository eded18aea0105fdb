//! A fresh database per test on the fixture's PostgreSQL, with a superuser pool and a pool of the
//! fixture's non-superuser application role.
#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tenancy_core::TenantId;
use tenancy_core::conformance::{test_app_role, test_database_url, test_database_url_2};

pub struct TestDb {
    pub name: String,
    server: PgConnectOptions,
    pub admin: PgPool,
    pub app: PgPool,
}

pub fn superuser_options(url: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(url).expect("valid test URL")
}

/// The application role's connect options on the server of `url`.
pub fn app_options(url: &str) -> PgConnectOptions {
    let role = test_app_role();
    superuser_options(url).username(&role).password(&role)
}

impl TestDb {
    /// A new database `tiso_<prefix>_<hex>` on the first server.
    pub async fn new(prefix: &str) -> Self {
        Self::on(&test_database_url(), prefix, 5).await
    }

    /// As [`new`], with an application pool of `app_connections`.
    pub async fn with_app_connections(prefix: &str, app_connections: u32) -> Self {
        Self::on(&test_database_url(), prefix, app_connections).await
    }

    pub async fn on(url: &str, prefix: &str, app_connections: u32) -> Self {
        let name = format!(
            "tiso_{prefix}_{}",
            &TenantId::new().simple().to_string()[16..]
        );
        let server = superuser_options(url);
        let maintenance = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(server.clone())
            .await
            .expect("connect as superuser");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&maintenance)
            .await
            .expect("create test database");
        maintenance.close().await;
        let admin = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(server.clone().database(&name))
            .await
            .expect("connect to the test database");
        let app = PgPoolOptions::new()
            .max_connections(app_connections)
            .connect_lazy_with(app_options(url).database(&name));
        Self {
            name,
            server,
            admin,
            app,
        }
    }

    pub fn app_role(&self) -> String {
        test_app_role()
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.admin)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Drops the database (closing this helper's pools first).
    pub async fn drop(self) {
        self.app.close().await;
        self.admin.close().await;
        let maintenance = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(self.server.clone())
            .await
            .expect("connect as superuser");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&maintenance)
        .await
        .expect("drop test database");
        maintenance.close().await;
    }
}

pub fn second_server_url() -> String {
    test_database_url_2()
}
