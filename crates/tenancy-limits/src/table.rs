//! [`Table`]: the tenants' limiter entries, read without a lock, kept to a capacity by CLOCK.
//!
//! Why not a cache crate: the request path of a tenant whose entry is cached must touch nothing
//! another tenant's requests write. `quick_cache` and `moka` read under a shard's lock (shared
//! by the tenants of that shard); `papaya`'s map reads are lock-free (an epoch pin of the calling
//! thread, then atomic loads), so the map is papaya's and the bound is kept here: each entry has
//! a "used" bit that its own hits set (a store only when it was clear), and when an insert takes
//! the table past its capacity, one trimmer sweeps it (CLOCK, "second chance"): entries used
//! since the last sweep lose their bit, the others are removed, until the table is back under
//! seven eighths of its capacity. The sweep runs on the miss path only, never on a hit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use papaya::{Compute, Operation};
use tenancy_core::TenantId;

/// What the table keeps per tenant: the value and its "used" bit.
#[derive(Debug)]
pub(crate) struct Slot<V> {
    value: Arc<V>,
    used: AtomicBool,
}

/// The bounded, lock-free-read map of tenants to `V`.
pub(crate) struct Table<V> {
    /// foldhash, seeded per table (tenant ids are not secret, but a seed costs nothing).
    map: papaya::HashMap<TenantId, Slot<V>, foldhash::fast::RandomState>,
    capacity: usize,
    /// One trimmer at a time; taken with `try_lock` on the miss path only.
    trimming: Mutex<()>,
}

impl<V: Send + Sync + 'static> Table<V> {
    /// A table of at most about `capacity` entries (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            map: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .capacity(capacity.min(4096))
                .build(),
            capacity,
            trimming: Mutex::new(()),
        }
    }

    /// The tenant's value, marked used: lock-free, writing only to the tenant's own slot (and
    /// only when its bit was clear).
    #[inline]
    pub(crate) fn get(&self, tenant: &TenantId) -> Option<Arc<V>> {
        let map = self.map.pin();
        let slot = map.get(tenant)?;
        if !slot.used.load(Ordering::Relaxed) {
            slot.used.store(true, Ordering::Relaxed);
        }
        Some(Arc::clone(&slot.value))
    }

    /// The tenant's value, not marked used.
    pub(crate) fn peek(&self, tenant: &TenantId) -> Option<Arc<V>> {
        self.map
            .pin()
            .get(tenant)
            .map(|slot| Arc::clone(&slot.value))
    }

    /// Stores the tenant's value (replacing any), then trims the table if it is over capacity.
    pub(crate) fn insert(&self, tenant: TenantId, value: Arc<V>) {
        self.map.pin().insert(tenant, Slot::new(value));
        self.trim();
    }

    /// The tenant's stored value when `keep` accepts it, else stores `value`: concurrent first
    /// loads of a tenant end up sharing one value.
    pub(crate) fn insert_first(
        &self,
        tenant: TenantId,
        value: Arc<V>,
        keep: impl Fn(&V) -> bool,
    ) -> Arc<V> {
        let stored = {
            let map = self.map.pin();
            // One atomic step: no value stored meanwhile is overwritten unseen.
            match map.compute(tenant, |stored| match stored {
                Some((_, slot)) if keep(&slot.value) => Operation::Abort(Arc::clone(&slot.value)),
                _ => Operation::Insert(Slot::new(Arc::clone(&value))),
            }) {
                Compute::Aborted(kept) => kept,
                Compute::Inserted(_, slot) | Compute::Updated { new: (_, slot), .. } => {
                    Arc::clone(&slot.value)
                }
                Compute::Removed(..) => value,
            }
        };
        self.trim();
        stored
    }

    /// How many tenants have an entry.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Sweeps the table back under 7/8 of its capacity when it is over it (see the module docs).
    fn trim(&self) {
        if self.map.len() <= self.capacity {
            return;
        }
        // Another thread is sweeping: the table may pass its capacity by the inserts running
        // meanwhile, which that sweep removes.
        let Ok(_sweeping) = self.trimming.try_lock() else {
            return;
        };
        let target = self.capacity - self.capacity / 8;
        let map = self.map.pin();
        let mut len = map.len();
        // Pass one clears the bits of used slots and removes the others; pass two removes those
        // not used since; pass three, those used again during pass two.
        for _ in 0..3 {
            for (tenant, slot) in &map {
                if len <= target {
                    return;
                }
                if slot.used.swap(false, Ordering::Relaxed) {
                    continue;
                }
                // Only the slot looked at: one stored meanwhile (a rebuilt entry) stays.
                if let Ok(Some(_)) = map.remove_if(tenant, |_, now| std::ptr::eq(now, slot)) {
                    len -= 1;
                }
            }
        }
    }
}

impl<V> Slot<V> {
    fn new(value: Arc<V>) -> Self {
        Self {
            value,
            used: AtomicBool::new(false),
        }
    }
}

impl<V> std::fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.map.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Table;
    use std::sync::Arc;
    use tenancy_core::TenantId;

    #[test]
    fn the_table_stays_at_its_capacity_and_keeps_what_is_used() {
        let table = Table::new(100);
        let kept = TenantId::new();
        table.insert(kept, Arc::new(0_u32));
        for i in 0..10_000_u32 {
            table.insert(TenantId::new(), Arc::new(i));
            assert!(table.len() <= 100, "{} entries", table.len());
            // A tenant with traffic between the sweeps is never the one removed.
            assert_eq!(table.get(&kept).as_deref(), Some(&0));
        }
    }

    #[test]
    fn concurrent_first_values_are_one() {
        let table = Table::new(10);
        let tenant = TenantId::new();
        let barrier = std::sync::Barrier::new(8);
        let stored: Vec<Arc<u32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8_u32)
                .map(|i| {
                    let (table, barrier) = (&table, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        table.insert_first(tenant, Arc::new(i), |_| true)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            stored.iter().all(|s| Arc::ptr_eq(s, &stored[0])),
            "{stored:?}"
        );
        let replaced = table.insert_first(tenant, Arc::new(99), |value| *value != *stored[0]);
        assert_eq!(*replaced, 99);
        assert_eq!(table.peek(&tenant).as_deref(), Some(&99));
    }
}
