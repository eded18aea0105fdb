//! [`TenantLabels`]: the bounded set of tenants that get a metric label of their own.
//!
//! A metric labelled by tenant grows a series per tenant: with many tenants a metrics backend
//! drowns. The first `capacity` tenants seen get their id as label, every later one is counted
//! under [`OTHER`]; a tenant keeps the label it got for the life of the process, so its series
//! never switch labels.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use crate::id::TenantId;

/// The label of every tenant beyond the capacity.
pub const OTHER: &str = "other";

/// How many tenants get a label of their own unless configured otherwise.
pub const DEFAULT_LABELLED_TENANTS: usize = 100;

/// Tenants' metric labels, at most `capacity` of them distinct (plus [`OTHER`]).
///
/// ```
/// use tenancy_core::{TenantId, TenantLabels};
///
/// let labels = TenantLabels::new(1);
/// let (a, b) = (TenantId::new(), TenantId::new());
/// assert_eq!(&*labels.label(a), a.to_string());
/// assert_eq!(&*labels.label(b), "other");
/// assert_eq!(&*labels.label(a), a.to_string(), "a label, once given, stays");
/// ```
#[derive(Debug)]
pub struct TenantLabels {
    capacity: usize,
    labelled: RwLock<HashMap<TenantId, Arc<str>>>,
    other: Arc<str>,
}

impl TenantLabels {
    /// Labels for at most `capacity` tenants (0: every tenant is [`OTHER`]).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            labelled: RwLock::new(HashMap::new()),
            other: Arc::from(OTHER),
        }
    }

    /// The process-wide labels every tenancy crate records metrics with. Their capacity is the
    /// first one given to [`init_global`](Self::init_global), else
    /// [`DEFAULT_LABELLED_TENANTS`].
    #[must_use]
    pub fn global() -> &'static Self {
        GLOBAL.get_or_init(|| Self::new(DEFAULT_LABELLED_TENANTS))
    }

    /// Sets the capacity of [`global`](Self::global); `false` when the global labels already
    /// existed (with the capacity they were made with).
    pub fn init_global(capacity: usize) -> bool {
        GLOBAL.set(Self::new(capacity)).is_ok()
    }

    /// The label of `tenant`: its id while fewer than `capacity` tenants have one, else
    /// [`OTHER`]. A read lock on the hit path; the write lock only for a tenant's first label.
    #[must_use]
    pub fn label(&self, tenant: TenantId) -> Arc<str> {
        {
            let labelled = self.labelled.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(label) = labelled.get(&tenant) {
                return Arc::clone(label);
            }
            if labelled.len() >= self.capacity {
                return Arc::clone(&self.other);
            }
        }
        let mut labelled = self
            .labelled
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if labelled.len() >= self.capacity && !labelled.contains_key(&tenant) {
            return Arc::clone(&self.other);
        }
        Arc::clone(
            labelled
                .entry(tenant)
                .or_insert_with(|| Arc::from(tenant.to_string())),
        )
    }

    /// How many tenants have a label of their own.
    #[must_use]
    pub fn len(&self) -> usize {
        self.labelled
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no tenant has a label yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most tenants that get a label of their own.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

static GLOBAL: OnceLock<TenantLabels> = OnceLock::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stop_at_the_capacity_and_never_change() {
        let labels = TenantLabels::new(3);
        let tenants: Vec<TenantId> = (0..10).map(|_| TenantId::new()).collect();
        let first: Vec<Arc<str>> = tenants.iter().map(|t| labels.label(*t)).collect();
        assert_eq!(labels.len(), 3);
        for (tenant, label) in tenants.iter().zip(&first).take(3) {
            assert_eq!(**label, *tenant.to_string());
        }
        assert!(first[3..].iter().all(|l| &**l == OTHER));
        let again: Vec<Arc<str>> = tenants.iter().map(|t| labels.label(*t)).collect();
        assert_eq!(first, again);
        assert_eq!(&*TenantLabels::new(0).label(tenants[0]), OTHER);
    }

    #[test]
    fn concurrent_first_labels_respect_the_capacity() {
        let labels = Arc::new(TenantLabels::new(50));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let labels = Arc::clone(&labels);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let _ = labels.label(TenantId::new());
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(labels.len(), 50);
    }
}
