//! Identifiers. Campaigns, tenants, vouchers and orders are UUIDs made by the
//! layers that own randomness and the clock; users are the tenant's own
//! opaque strings.

use std::fmt;
use std::str::FromStr;

use crate::validation::Invalid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub const fn from_uuid(uuid: uuid::Uuid) -> $name {
                $name(uuid)
            }

            pub const fn as_uuid(&self) -> &uuid::Uuid {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(text: &str) -> Result<$name, Invalid> {
                uuid::Uuid::try_parse(text)
                    .map($name)
                    .map_err(|_| Invalid::one($what, concat!("not a valid ", $what)))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(formatter)
            }
        }
    };
}

uuid_id!(
    /// A business using voucherd.
    TenantId,
    "tenant_id"
);
uuid_id!(
    /// What is given away or sold.
    CampaignId,
    "campaign_id"
);
uuid_id!(
    /// One unit of a campaign's supply.
    VoucherId,
    "voucher_id"
);
uuid_id!(
    /// One hold of a voucher for a buyer until payment. A voucher released
    /// and reserved again gets a new reservation id, so a stale one cannot
    /// reach the next buyer's hold.
    ReservationId,
    "reservation_id"
);
uuid_id!(
    /// A payment attempt for a reservation.
    OrderId,
    "order_id"
);

/// Time-ordered ids (UUID v7) for rows made at `now`, each one after the
/// one before: an index on them grows at its end, where a random id (v4)
/// lands on a random page. A slice of generated codes then writes the id
/// index's last pages rather than a page for each code (a second random
/// page, besides the code's own). Unguessable still: 74 of the 128 bits
/// are random; the first 48 say the millisecond `now` names.
#[derive(Debug)]
pub struct OrderedUuids {
    context: uuid::ContextV7,
    seconds: u64,
    nanos: u32,
}

impl OrderedUuids {
    /// Ids stamped with `now`, the caller's clock (an instant before 1970
    /// is stamped as 1970).
    pub fn at(now: jiff::Timestamp) -> OrderedUuids {
        OrderedUuids {
            context: uuid::ContextV7::new(),
            seconds: u64::try_from(now.as_second()).unwrap_or(0),
            nanos: u32::try_from(now.subsec_nanosecond()).unwrap_or(0),
        }
    }

    /// The next id, after every one this made before.
    pub fn next_id(&mut self) -> uuid::Uuid {
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            &self.context,
            self.seconds,
            self.nanos,
        ))
    }
}

/// One time-ordered id for `now`.
pub fn uuid_at(now: jiff::Timestamp) -> uuid::Uuid {
    OrderedUuids::at(now).next_id()
}

/// A user as the tenant names them: an opaque, printable string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub const LENGTH_MAX: usize = 128;

    pub fn parse(text: &str) -> Result<UserId, Invalid> {
        if text.is_empty() || text.len() > UserId::LENGTH_MAX {
            return Err(Invalid::one(
                "user_id",
                format!("must be 1 to {} bytes long", UserId::LENGTH_MAX),
            ));
        }
        if text.chars().any(|character| character.is_control()) {
            return Err(Invalid::one(
                "user_id",
                "must not contain control characters",
            ));
        }
        Ok(UserId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(UserId::parse("u-1").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
        assert!(UserId::parse("a\nb").is_err());
    }

    #[test]
    fn ordered_uuids_sort_in_the_order_made_and_by_time() {
        let now: jiff::Timestamp = "2026-12-02T12:00:00.123Z".parse().unwrap();
        let mut ids = OrderedUuids::at(now);
        let made: Vec<uuid::Uuid> = (0..10_000).map(|_| ids.next_id()).collect();
        assert!(made.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(made.iter().all(|id| id.get_version_num() == 7));
        let later = now + jiff::SignedDuration::from_millis(1);
        assert!(uuid_at(later) > made[made.len() - 1]);
        assert!(uuid_at(now) < uuid_at(later));
        // The millisecond is the clock's, not the machine's.
        let (seconds, nanos) = made[0].get_timestamp().unwrap().to_unix();
        assert_eq!((seconds, nanos / 1_000_000), (now.as_second() as u64, 123));
    }

    #[test]
    fn uuid_ids_round_trip() {
        let text = "0190f5c4-8d2e-7c3a-9b1e-2f4a5b6c7d8e";
        let id: CampaignId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert!("nope".parse::<CampaignId>().is_err());
    }
}
