//! Decisions shared by both backends' trait implementations.

use tenancy_core::{StatusChange, TenantError, TenantId, TenantStatus};

use crate::error::not_found;

/// The error of a status change that the conditional `UPDATE ... WHERE status = from` did not
/// apply, given the status read afterwards (`None`: the tenant does not exist).
///
/// Same precedence as the in-memory store: a missing tenant is `NotFound`, a stale `from` is
/// `StatusConflict`, and only then does the transition table speak.
pub(crate) fn refused_status_change(
    id: TenantId,
    change: &StatusChange,
    actual: Option<TenantStatus>,
) -> TenantError {
    match actual {
        None => not_found(id),
        Some(actual) if actual != change.from => TenantError::StatusConflict {
            tenant: id,
            expected: change.from,
            actual,
        },
        Some(_) => change.from.check_transition(change.to, id).err().unwrap_or(
            TenantError::StatusConflict {
                // The row was in `from` again by the time it was read (an A -> B -> A race):
                // the change was still based on a state that no longer held.
                tenant: id,
                expected: change.from,
                actual: change.from,
            },
        ),
    }
}

/// The error of a status-reason change that the conditional `UPDATE ... WHERE status = status` did
/// not apply, given the status read afterwards (`None`: the tenant does not exist).
pub(crate) fn refused_status_reason(
    id: TenantId,
    expected: TenantStatus,
    actual: Option<TenantStatus>,
) -> TenantError {
    match actual {
        None => not_found(id),
        Some(actual) => TenantError::StatusConflict {
            tenant: id,
            expected,
            actual,
        },
    }
}

/// Parses a status read from the database.
pub(crate) fn parse_status(id: TenantId, text: &str) -> Result<TenantStatus, TenantError> {
    text.parse().map_err(|e| {
        TenantError::storage(
            format!("tenant {id}: stored column status is unreadable; repair the row"),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TenantStatus::{Active, Inactive, Provisioning, Suspended};

    #[test]
    fn refusals_follow_the_in_memory_precedence() {
        let id = TenantId::new();
        let change = |from, to| StatusChange {
            from,
            to,
            reason: None,
        };
        assert!(matches!(
            refused_status_change(id, &change(Active, Provisioning), None),
            TenantError::NotFound { .. }
        ));
        assert!(matches!(
            refused_status_change(id, &change(Active, Provisioning), Some(Suspended)),
            TenantError::StatusConflict {
                expected: Active,
                actual: Suspended,
                ..
            }
        ));
        assert!(matches!(
            refused_status_change(id, &change(Suspended, Provisioning), Some(Suspended)),
            TenantError::IllegalTransition {
                from: Suspended,
                to: Provisioning,
                ..
            }
        ));
        assert!(matches!(
            refused_status_change(id, &change(Active, Inactive), Some(Active)),
            TenantError::StatusConflict {
                expected: Active,
                actual: Active,
                ..
            }
        ));
        assert!(parse_status(id, "gone").is_err());
    }
}
