//! 10,000 and then 20,000 distinct tenants through the limiter: its entries stay at most
//! `max_tenants`, and the memory it holds (counted by a counting allocator) stops growing.
#![allow(unsafe_code)] // The counting allocator: GlobalAlloc is an unsafe trait.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use tenancy_core::TenantId;
use tenancy_limits::{LimitsConfig, TenantLimits};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

async fn pass(limits: &TenantLimits, tenants: usize) {
    for _ in 0..tenants {
        let permit = limits
            .check(TenantId::new(), None)
            .await
            .expect("under its limits");
        drop(permit);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_tenants_leave_the_limiter_bounded() {
    let capacity = 1_000;
    let config: LimitsConfig = serde_json::from_value(serde_json::json!({
        "default_plan": "free",
        "plans": {"free": {"requests_per_second": 10, "burst": 20, "max_in_flight": 8, "max_transactions": 4}},
        "max_tenants": capacity,
    }))
    .unwrap();
    let limits = TenantLimits::new(&config).unwrap();
    let before = LIVE.load(Ordering::SeqCst);
    pass(&limits, 10_000).await;
    let after_10k = LIVE.load(Ordering::SeqCst);
    assert!(
        limits.entry_count() <= capacity as usize,
        "{} entries",
        limits.entry_count()
    );
    pass(&limits, 10_000).await;
    let after_20k = LIVE.load(Ordering::SeqCst);
    assert!(
        limits.entry_count() <= capacity as usize,
        "{} entries",
        limits.entry_count()
    );
    let (held_10k, held_20k) = (after_10k - before, after_20k - before);
    println!(
        "entries after 10,000 and 20,000 tenants: {}; bytes held: {held_10k} and {held_20k} \
         ({} per entry)",
        limits.entry_count(),
        held_20k / limits.entry_count().max(1) as isize
    );
    // Twice the tenants, not twice the memory: bounded by the capacity (10% slack for the
    // allocator's own bookkeeping of a cache that is full either way).
    assert!(
        held_20k <= held_10k + held_10k / 10,
        "{held_10k} -> {held_20k}"
    );
    // At most ~2 KiB per kept tenant (a limiter, counters, a semaphore, the cache's slot).
    assert!(
        held_20k <= 2048 * capacity as isize,
        "{held_20k} bytes for {capacity} entries"
    );
}
