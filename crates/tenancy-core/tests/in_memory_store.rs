//! The in-memory store passes the conformance suite, including 100 concurrent creates of one slug.

use std::sync::Arc;

use tenancy_core::InMemoryStore;
use tenancy_core::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_conforms() {
    conformance::run_all(Arc::new(InMemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_creates_of_one_slug_make_one_tenant() {
    conformance::concurrent_creates_of_one_slug(Arc::new(InMemoryStore::new()), 100).await;
}
