//! The store's size quota (etcd's `--quota-backend-bytes`, 2 GiB by default there and here):
//! past it, writes that add data are refused with a 507 naming the quota, deletes go on, and
//! the alarm metric `store_quota_exceeded` is 1 until deletes bring the store back under.
//!
//! What is measured is the bytes of the stored objects (redb's count of its leaves for the
//! objects table), which deletes free at once; the file only grows (redb reuses its free
//! pages), so it would keep the alarm on. The figure is refreshed every second on a
//! blocking thread, so the quota is soft by at most a second of writes (which the in-flight
//! budgets bound), as etcd's own check before it proposes is.
//!
//! Past the quota, etcd refuses every write but deletes, which also stops node statuses and
//! leases, so Pods look lost while the operator cleans up. ketch refuses creates to everyone,
//! and updates and patches to everyone but the nodes and the admin: the cluster keeps its
//! view of itself, and nothing new is stored until space is freed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::auth::User;
use super::error::ApiError;
use crate::store::Store;

/// etcd's default quota.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// How often the stored bytes are measured.
const REFRESH: Duration = Duration::from_secs(1);

/// The quota and the last measurement.
#[derive(Debug)]
pub struct Quota {
    limit: u64,
    used: AtomicU64,
}

/// Whether a write of `verb` by a caller may go on when the store is over its quota.
fn allowed_over_quota(verb: &str, trusted: bool) -> bool {
    match verb {
        "delete" | "deletecollection" => true,
        "update" | "patch" => trusted,
        _ => false,
    }
}

impl Quota {
    pub fn new(limit: u64) -> Quota {
        Quota {
            limit,
            used: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The stored bytes last measured.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The alarm: the store holds more than its quota.
    pub fn exceeded(&self) -> bool {
        self.used() > self.limit
    }

    fn set_used(&self, bytes: u64) {
        let was = self.used.swap(bytes, Ordering::Relaxed) > self.limit;
        let is = bytes > self.limit;
        if is && !was {
            tracing::warn!(
                used = bytes,
                quota = self.limit,
                "the store is over its quota: creates are refused until deletes free space"
            );
        } else if was && !is {
            tracing::info!(
                used = bytes,
                quota = self.limit,
                "the store is under its quota again"
            );
        }
    }

    /// Refuses `user`'s write of `verb` (create, update, patch, delete) when the store is
    /// over its quota and the write could add data.
    ///
    /// # Errors
    /// [`ApiError::InsufficientStorage`], naming the quota.
    pub fn check(&self, user: &User, verb: &str) -> Result<(), ApiError> {
        if !self.exceeded() {
            return Ok(());
        }
        let trusted = user
            .groups
            .iter()
            .any(|g| g == "system:nodes" || g == "system:masters");
        if allowed_over_quota(verb, trusted) {
            return Ok(());
        }
        Err(ApiError::InsufficientStorage(format!(
            "the store holds {} bytes of objects, over its quota of {} \
             (--quota-backend-bytes): delete objects to free space",
            self.used(),
            ketch_api::format::bytes(self.limit),
        )))
    }

    /// Measures the store now and every second until the store shuts down.
    pub fn spawn_refresher(self: &Arc<Self>, store: Store) {
        let quota = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let s = store.clone();
                let measured = tokio::task::spawn_blocking(move || s.stored_bytes()).await;
                let Some(quota) = quota.upgrade() else { return };
                match measured {
                    Ok(Ok(bytes)) => quota.set_used(bytes),
                    // Shut down (or the file failed, which every other path reports).
                    Ok(Err(_)) | Err(_) => return,
                }
                drop(quota);
                tokio::time::sleep(REFRESH).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> User {
        User::new("u", groups)
    }

    #[test]
    fn over_the_quota_only_deletes_and_the_clusters_own_updates_go_on() {
        let q = Quota::new(100);
        q.set_used(100);
        assert!(!q.exceeded(), "at the quota is not over it");
        for verb in ["create", "update", "patch"] {
            assert!(q.check(&user(&[]), verb).is_ok());
        }
        q.set_used(101);
        assert!(q.exceeded());
        let anyone = user(&["system:authenticated"]);
        let node = user(&["system:nodes"]);
        let admin = user(&["system:masters"]);
        for (who, verb, ok) in [
            (&anyone, "create", false),
            (&anyone, "update", false),
            (&anyone, "patch", false),
            (&anyone, "delete", true),
            (&anyone, "deletecollection", true),
            (&node, "create", false),
            (&node, "update", true),
            (&node, "patch", true),
            (&admin, "create", false),
            (&admin, "patch", true),
        ] {
            assert_eq!(q.check(who, verb).is_ok(), ok, "{:?} {verb}", who.groups);
        }
        let err = q.check(&anyone, "create").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the store holds 101 bytes of objects, over its quota of 100 (--quota-backend-bytes): delete objects to free space"
        );
        q.set_used(50);
        assert!(q.check(&anyone, "create").is_ok(), "the alarm clears");
    }
}
