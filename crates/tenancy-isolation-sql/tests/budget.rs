//! Tenant transaction budgets on real PostgreSQL: statement and lock timeouts set
//! transaction-locally, and the cap on a tenant's concurrent transactions.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::TestDb;
use tenancy_core::TenantId;
use tenancy_isolation_sql::{
    BudgetError, RowLevelStrategy, TenantDatabase, TransactionBudget, TransactionBudgets,
};
use tokio::sync::Semaphore;

/// Budgets by tenant; tenants not listed are unlimited.
fn budgets(map: HashMap<TenantId, TransactionBudget>) -> Arc<dyn TransactionBudgets> {
    Arc::new(move |tenant| map.get(&tenant).cloned().unwrap_or_default())
}

#[tokio::test]
async fn a_slow_query_is_cancelled_at_its_statement_timeout_while_another_tenant_runs() {
    let db = TestDb::with_app_connections("budget_stmt", 6).await;
    let (slow, quiet) = (TenantId::new(), TenantId::new());
    let timeout = Duration::from_millis(300);
    let database = TenantDatabase::new(db.app.clone(), Arc::new(RowLevelStrategy::default()))
        .with_budgets(
            budgets(HashMap::from([(
                slow,
                TransactionBudget::unlimited().with_statement_timeout(timeout),
            )])),
            Duration::from_secs(30),
        );

    let slow_query = {
        let database = database.clone();
        tokio::spawn(async move {
            let mut tx = database.begin(slow).await.unwrap();
            assert_eq!(tx.statement_timeout(), Some(timeout));
            let setting: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
                .fetch_one(&mut **tx)
                .await
                .unwrap();
            assert_eq!(setting, "300ms", "set for the transaction");
            let error = sqlx::query("SELECT pg_sleep(10)")
                .execute(&mut **tx)
                .await
                .expect_err("the statement is cancelled");
            tx.query_error("sleeping", error)
        })
    };
    // The quiet tenant's transactions run meanwhile, with no timeout of their own.
    let mut quiet_queries = 0;
    while !slow_query.is_finished() {
        let mut tx = database.begin(quiet).await.unwrap();
        let setting: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
            .fetch_one(&mut **tx)
            .await
            .unwrap();
        assert_eq!(setting, "0", "the quiet tenant has no timeout");
        tx.commit().await.unwrap();
        quiet_queries += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = slow_query.await.unwrap();
    assert!(quiet_queries > 0, "the quiet tenant was served meanwhile");
    assert_eq!(
        BudgetError::of(&error),
        Some(&BudgetError::StatementTimeout {
            tenant: slow,
            timeout
        }),
        "{error}"
    );
    assert!(
        error.to_string().contains("statement_timeout of 300 ms"),
        "{error}"
    );

    // The timeout ended with the transaction: the pooled connection carries none.
    let after: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
        .fetch_one(&db.app)
        .await
        .unwrap();
    assert_eq!(after, "0");
    db.drop().await;
}

#[tokio::test]
async fn a_statement_waiting_for_a_lock_is_cancelled_at_its_lock_timeout() {
    let db = TestDb::with_app_connections("budget_lock", 4).await;
    db.exec("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES (1, 0)")
        .await;
    db.exec(&format!(
        "GRANT SELECT, UPDATE ON counters TO \"{}\"",
        db.app_role()
    ))
    .await;
    let (holder, waiter) = (TenantId::new(), TenantId::new());
    let timeout = Duration::from_millis(200);
    let database = TenantDatabase::new(db.app.clone(), Arc::new(RowLevelStrategy::default()))
        .with_budgets(
            budgets(HashMap::from([(
                waiter,
                TransactionBudget::unlimited().with_lock_timeout(timeout),
            )])),
            Duration::from_secs(30),
        );
    let mut held = database.begin(holder).await.unwrap();
    sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 1")
        .execute(&mut **held)
        .await
        .unwrap();
    let mut tx = database.begin(waiter).await.unwrap();
    let error = sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .expect_err("the lock is held");
    let error = tx.query_error("updating", error);
    drop(tx);
    assert_eq!(
        BudgetError::of(&error),
        Some(&BudgetError::LockTimeout {
            tenant: waiter,
            timeout
        }),
        "{error}"
    );
    held.commit().await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn a_tenant_cannot_open_more_transactions_than_its_cap() {
    let db = TestDb::with_app_connections("budget_cap", 6).await;
    let (busy, other) = (TenantId::new(), TenantId::new());
    let slots = Arc::new(Semaphore::new(2));
    let wait = Duration::from_millis(200);
    let database = TenantDatabase::new(db.app.clone(), Arc::new(RowLevelStrategy::default()))
        .with_budgets(
            budgets(HashMap::from([(
                busy,
                TransactionBudget::unlimited().with_slots(Arc::clone(&slots)),
            )])),
            wait,
        );
    let first = database.begin(busy).await.unwrap();
    let second = database.begin(busy).await.unwrap();
    let error = database.begin(busy).await.expect_err("the cap is 2");
    match BudgetError::of(&error) {
        Some(BudgetError::TooManyTransactions { tenant, waited, .. }) => {
            assert_eq!((*tenant, *waited), (busy, wait));
        }
        other => panic!("expected TooManyTransactions, got {other:?}: {error}"),
    }
    // Another tenant is not held back by the busy one's cap.
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(database.begin(other).await.unwrap());
    }
    // A slot given back (commit, rollback, drop) lets the tenant in again.
    first.commit().await.unwrap();
    let third = database.begin(busy).await.unwrap();
    drop(second);
    let fourth = database.begin(busy).await.unwrap();
    assert_eq!(slots.available_permits(), 0);
    third.rollback().await.unwrap();
    fourth.commit().await.unwrap();
    assert_eq!(slots.available_permits(), 2);
    for tx in others {
        tx.commit().await.unwrap();
    }
    db.drop().await;
}
