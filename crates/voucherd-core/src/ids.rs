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
    fn uuid_ids_round_trip() {
        let text = "0190f5c4-8d2e-7c3a-9b1e-2f4a5b6c7d8e";
        let id: CampaignId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert!("nope".parse::<CampaignId>().is_err());
    }
}
