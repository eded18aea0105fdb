//! `tenancy-isolation-sql`: see its issue; this crate holds only its documentation until its capability lands.
