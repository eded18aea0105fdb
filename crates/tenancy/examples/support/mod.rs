//! What the PostgreSQL examples share and do not teach: a throwaway database (and role) for one
//! run, created on the server of `DATABASE_URL` and dropped at the end, so that an example never
//! touches anything it did not create.

use std::error::Error;

use reqwest::Url;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Errors of the examples: any error, sendable across tasks.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// The server to use: `DATABASE_URL`, else the URL `cargo xtask pg start` prints
/// (`TENANCY_TEST_DATABASE_URL`). Its user must be allowed to create databases and roles.
pub(crate) fn server_url() -> Result<String, BoxError> {
    std::env::var("DATABASE_URL")
        .or_else(|_| std::env::var("TENANCY_TEST_DATABASE_URL"))
        .map_err(|_| {
            "this example needs PostgreSQL: set DATABASE_URL to a server URL whose user may \
             create databases and roles (postgres://postgres@127.0.0.1:5432/postgres), or run \
             `cargo xtask pg start` and paste the export lines it prints"
                .into()
        })
}

/// A database, and the roles made for it, that exist for one run of an example.
#[derive(Debug)]
pub(crate) struct ScratchDatabase {
    server: String,
    /// Its name: `tenancy_example_<purpose>_<random>`.
    pub(crate) name: String,
    /// Its URL, as the server URL's user (who owns it).
    pub(crate) url: String,
    roles: Vec<String>,
}

impl ScratchDatabase {
    /// Creates the database `tenancy_example_<purpose>_<random suffix>`.
    pub(crate) async fn create(purpose: &str) -> Result<Self, BoxError> {
        let server = server_url()?;
        let name = format!("tenancy_example_{purpose}_{}", suffix());
        run(&server, &format!("CREATE DATABASE \"{name}\"")).await?;
        let url = with_user_and_database(&server, None, &name)?;
        println!("created the database {name}");
        Ok(Self {
            server,
            name,
            url,
            roles: Vec::new(),
        })
    }

    /// Creates a login role for the application, subject to row-level security (not superuser,
    /// not BYPASSRLS, owning nothing) and allowed to create schemas in the database (the tenant
    /// store's); returns its name and the database's URL as that role.
    #[allow(
        dead_code,
        reason = "each example compiles this module; not every one needs a role"
    )]
    pub(crate) async fn application_role(&mut self) -> Result<(String, String), BoxError> {
        let role = format!("{}_app", self.name);
        let password = suffix();
        run(
            &self.server,
            &format!(
                "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}' \
                 NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
            ),
        )
        .await?;
        self.roles.push(role.clone());
        run(
            &self.server,
            &format!("GRANT CREATE ON DATABASE \"{}\" TO \"{role}\"", self.name),
        )
        .await?;
        let url = with_user_and_database(&self.server, Some((&role, &password)), &self.name)?;
        Ok((role, url))
    }

    /// Drops the database (closing any connection still open to it), then its roles.
    pub(crate) async fn remove(self) -> Result<(), BoxError> {
        let database = format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name);
        run(&self.server, &database).await?;
        for role in &self.roles {
            run(&self.server, &format!("DROP ROLE \"{role}\"")).await?;
        }
        println!("dropped the database {}", self.name);
        Ok(())
    }
}

/// Runs one statement on the server's own database.
async fn run(url: &str, sql: &str) -> Result<(), BoxError> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// `url` with its database, and its user and password when given, replaced.
fn with_user_and_database(
    url: &str,
    user: Option<(&str, &str)>,
    database: &str,
) -> Result<String, BoxError> {
    let mut url = Url::parse(url)?;
    url.set_path(database);
    if let Some((user, password)) = user {
        url.set_username(user)
            .and_then(|()| url.set_password(Some(password)))
            .map_err(|()| "the database URL cannot take a user name")?;
    }
    Ok(url.into())
}

/// 32 random hexadecimal digits, for names (and the throwaway role's password) no one else uses.
fn suffix() -> String {
    tenancy::core::Uuid::new_v4().simple().to_string()
}
