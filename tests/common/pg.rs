//! A fresh Postgres database per test, on the local server the machines run
//! (BATCHPROC_TEST_PG, default postgres://postgres@127.0.0.1:5432/test).
//! Unreachable: under CI=true the test fails; elsewhere it says loudly that
//! it was skipped.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection};

pub struct PgDb {
    pub url: String,
    admin: String,
    name: String,
}

fn admin_url() -> String {
    std::env::var("BATCHPROC_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A new, empty database, dropped when the value is.
pub fn fresh_db() -> Option<PgDb> {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = admin_url();
    let name = format!(
        "bp_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let created = block_on(async {
        let mut conn = PgConnection::connect(&admin).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut conn)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await
    });
    if let Err(e) = created {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Postgres at {admin} is unreachable under CI: {e}");
        }
        eprintln!("\n*** SKIPPED: Postgres at {admin} is unreachable ({e}) ***\n");
        return None;
    }
    let base = admin.rsplit_once('/').unwrap().0;
    Some(PgDb {
        url: format!("{base}/{name}"),
        admin,
        name,
    })
}

impl PgDb {
    /// The database URL with a password added (trust auth ignores it), to
    /// check that it never shows.
    pub fn url_with_password(&self, password: &str) -> String {
        self.url
            .replacen("postgres@", &format!("postgres:{password}@"), 1)
    }

    pub fn query(&self, sql: &str) -> Vec<PgRow> {
        block_on(async {
            let mut conn = PgConnection::connect(&self.url).await.unwrap();
            let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            rows
        })
    }

    pub fn execute(&self, sql: &str) {
        block_on(async {
            let mut conn = PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        })
    }

    /// Whether the newest run recorded in this database succeeded.
    pub fn last_run_succeeded(&self) -> bool {
        use sqlx::Row;
        let has_runs = self.query("SELECT to_regclass('batchproc_runs') IS NOT NULL")[0].get(0);
        has_runs
            && self
                .query("SELECT status FROM batchproc_runs ORDER BY id DESC LIMIT 1")
                .first()
                .is_some_and(|r| r.get::<String, _>(0) == "succeeded")
    }

    /// Lets sessions connect to this database, or refuses every new one (as
    /// a server that is down would).
    pub fn allow_connections(&self, allow: bool) {
        block_on(async {
            let mut conn = PgConnection::connect(&self.admin).await.unwrap();
            sqlx::query(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
                self.name
            ))
            .execute(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
        })
    }

    /// Waits until no session is connected to this database: the session
    /// of a client killed a moment ago lives on until the server notices,
    /// and may yet commit what the client sent before it died.
    pub fn wait_for_other_sessions_to_end(&self) {
        use sqlx::Row;
        let start = std::time::Instant::now();
        block_on(async {
            let mut conn = PgConnection::connect(&self.admin).await.unwrap();
            loop {
                let left: i64 = sqlx::query(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                     AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                )
                .bind(&self.name)
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get(0);
                if left == 0 {
                    break;
                }
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(30),
                    "{left} sessions still on {} after 30 s",
                    self.name
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            conn.close().await.unwrap();
        })
    }

    /// Ends every other session on this database, as a server restart would.
    pub fn terminate_sessions(&self) -> i64 {
        use sqlx::Row;
        block_on(async {
            let mut conn = PgConnection::connect(&self.admin).await.unwrap();
            let rows = sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.name)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
            rows.iter().filter(|r| r.get::<bool, _>(0)).count() as i64
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = block_on(async move {
            let mut conn = PgConnection::connect(&admin).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            conn.close().await
        });
    }
}
