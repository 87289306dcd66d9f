//! The tenants this node knows, with what every request needs of them at
//! hand: the signing key, the time zone their calendar days are counted in,
//! and their rate limiter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use voucherd_core::TimeZone;
use voucherd_core::ids::TenantId;
use voucherd_store::model::Tenant;

#[derive(Debug)]
pub struct TenantEntry {
    pub tenant: Tenant,
    pub zone: TimeZone,
    limiter: Option<Mutex<TokenBucket>>,
}

impl TenantEntry {
    pub fn new(tenant: Tenant) -> TenantEntry {
        let zone = TimeZone::get(&tenant.time_zone).unwrap_or_else(|error| {
            tracing::warn!(tenant = %tenant.id, zone = %tenant.time_zone, %error,
                "unknown time zone; counting days in UTC");
            TimeZone::UTC
        });
        let limiter = tenant
            .rate_limit_per_second
            .map(|rate| Mutex::new(TokenBucket::new(rate, Instant::now())));
        TenantEntry {
            tenant,
            zone,
            limiter,
        }
    }

    /// Takes one request's worth of the tenant's rate; when none is left,
    /// answers how long until there is.
    pub fn admit(&self) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(limiter) => limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(Instant::now()),
        }
    }
}

/// A token bucket holding at most one second of the rate.
#[derive(Debug)]
struct TokenBucket {
    rate_per_second: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    fn new(rate_per_second: u32, now: Instant) -> TokenBucket {
        let rate_per_second = f64::from(rate_per_second.max(1));
        TokenBucket {
            rate_per_second,
            tokens: rate_per_second,
            refilled_at: now,
        }
    }

    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_second).min(self.rate_per_second);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.rate_per_second,
            ))
        }
    }
}

/// Every tenant by id. Replaced wholesale when tenants are reloaded, which
/// keeps readers lock-free apart from one pointer copy.
#[derive(Debug, Default)]
pub struct TenantBook {
    tenants: RwLock<Arc<HashMap<TenantId, Arc<TenantEntry>>>>,
}

impl TenantBook {
    pub fn get(&self, id: TenantId) -> Option<Arc<TenantEntry>> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Replaces the book with `tenants`, keeping the limiter state of those
    /// that did not change.
    pub fn replace(&self, tenants: Vec<Tenant>) {
        let current = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let fresh = tenants
            .into_iter()
            .map(|tenant| {
                let entry = match current.get(&tenant.id) {
                    Some(entry) if entry.tenant == tenant => entry.clone(),
                    _ => Arc::new(TenantEntry::new(tenant)),
                };
                (entry.tenant.id, entry)
            })
            .collect();
        *self.tenants.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
    }

    pub fn all(&self) -> Vec<Arc<TenantEntry>> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_admits_its_rate_and_says_when_to_come_back() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        for _ in 0..10 {
            assert!(bucket.take(start).is_ok());
        }
        let retry_after = bucket.take(start).unwrap_err();
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(100));
        assert!(bucket.take(start + Duration::from_millis(100)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(100)).is_err());
    }
}
