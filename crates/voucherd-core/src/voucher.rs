//! The voucher lifecycle as pure transitions.
//!
//! `available → reserved → issued → locked → redeemed`, with
//! `reserved → available` (release, expiry, failed payment) and
//! `locked → issued` (unlock, expiry). The stores perform each transition as
//! one conditional statement; these functions are the specification they
//! are tested against.

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VoucherState {
    Available,
    Reserved,
    Issued,
    Locked,
    Redeemed,
}

impl VoucherState {
    pub const ALL: [VoucherState; 5] = [
        VoucherState::Available,
        VoucherState::Reserved,
        VoucherState::Issued,
        VoucherState::Locked,
        VoucherState::Redeemed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            VoucherState::Available => "available",
            VoucherState::Reserved => "reserved",
            VoucherState::Issued => "issued",
            VoucherState::Locked => "locked",
            VoucherState::Redeemed => "redeemed",
        }
    }

    pub fn parse(text: &str) -> Option<VoucherState> {
        VoucherState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// Why a lock, unlock or redeem was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoucherRefusal {
    /// Still available or only reserved: nothing to lock or redeem yet.
    NotIssued,
    /// Someone else's checkout holds the lock.
    Locked,
    /// Unlock of a voucher that holds no live lock.
    NotLocked,
    AlreadyRedeemed,
    Expired,
    /// A multi-use voucher is redeemed only under a lock.
    LockRequired,
}

/// The part of a voucher that lock, unlock and redeem decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redemption {
    pub state: VoucherState,
    pub expires_at: Option<Timestamp>,
    pub locked_until: Option<Timestamp>,
    pub redemptions: u32,
    pub redemptions_max: u32,
}

impl Redemption {
    /// The state as clients see it: a lock past its time is already gone,
    /// whether or not the expiry worker has swept it yet.
    pub fn state_at(&self, now: Timestamp) -> VoucherState {
        match self.state {
            VoucherState::Locked if !self.lock_is_live(now) => VoucherState::Issued,
            state => state,
        }
    }

    fn lock_is_live(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|expires_at| now >= expires_at)
    }

    fn check_redeemable(&self, now: Timestamp) -> Result<(), VoucherRefusal> {
        match self.state_at(now) {
            VoucherState::Available | VoucherState::Reserved => Err(VoucherRefusal::NotIssued),
            VoucherState::Redeemed => Err(VoucherRefusal::AlreadyRedeemed),
            _ if self.is_expired(now) => Err(VoucherRefusal::Expired),
            _ => Ok(()),
        }
    }

    pub fn lock(&self, now: Timestamp, ttl: SignedDuration) -> Result<Redemption, VoucherRefusal> {
        self.check_redeemable(now)?;
        if self.state_at(now) == VoucherState::Locked {
            return Err(VoucherRefusal::Locked);
        }
        Ok(Redemption {
            state: VoucherState::Locked,
            locked_until: Some(now.checked_add(ttl).unwrap_or(Timestamp::MAX)),
            ..*self
        })
    }

    pub fn unlock(&self, now: Timestamp) -> Result<Redemption, VoucherRefusal> {
        match self.state_at(now) {
            VoucherState::Locked => Ok(Redemption {
                state: VoucherState::Issued,
                locked_until: None,
                ..*self
            }),
            VoucherState::Redeemed => Err(VoucherRefusal::AlreadyRedeemed),
            _ => Err(VoucherRefusal::NotLocked),
        }
    }

    pub fn redeem(&self, now: Timestamp) -> Result<Redemption, VoucherRefusal> {
        self.check_redeemable(now)?;
        if self.state_at(now) == VoucherState::Issued && self.redemptions_max > 1 {
            return Err(VoucherRefusal::LockRequired);
        }
        let redemptions = self.redemptions + 1;
        Ok(Redemption {
            state: if redemptions >= self.redemptions_max {
                VoucherState::Redeemed
            } else {
                VoucherState::Issued
            },
            locked_until: None,
            redemptions,
            ..*self
        })
    }

    /// The expiry worker's step for one voucher: a lock past its time falls
    /// back to issued.
    pub fn expire_lock(&self, now: Timestamp) -> Option<Redemption> {
        (self.state == VoucherState::Locked && !self.lock_is_live(now)).then_some(Redemption {
            state: VoucherState::Issued,
            locked_until: None,
            ..*self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn issued(redemptions_max: u32) -> Redemption {
        Redemption {
            state: VoucherState::Issued,
            expires_at: Some(at(1_000)),
            locked_until: None,
            redemptions: 0,
            redemptions_max,
        }
    }

    const TEN_MINUTES: SignedDuration = SignedDuration::from_secs(600);

    #[test]
    fn a_single_use_voucher_redeems_once_without_a_lock() {
        let redeemed = issued(1).redeem(at(0)).unwrap();
        assert_eq!(redeemed.state, VoucherState::Redeemed);
        assert_eq!(redeemed.redeem(at(1)), Err(VoucherRefusal::AlreadyRedeemed));
    }

    #[test]
    fn a_multi_use_voucher_needs_a_lock_for_each_use() {
        let voucher = issued(2);
        assert_eq!(voucher.redeem(at(0)), Err(VoucherRefusal::LockRequired));
        let once = voucher
            .lock(at(0), TEN_MINUTES)
            .unwrap()
            .redeem(at(1))
            .unwrap();
        assert_eq!((once.state, once.redemptions), (VoucherState::Issued, 1));
        let twice = once
            .lock(at(2), TEN_MINUTES)
            .unwrap()
            .redeem(at(3))
            .unwrap();
        assert_eq!(
            (twice.state, twice.redemptions),
            (VoucherState::Redeemed, 2)
        );
    }

    #[test]
    fn a_lock_excludes_others_until_it_expires() {
        let locked = issued(1).lock(at(0), TEN_MINUTES).unwrap();
        assert_eq!(
            locked.lock(at(599), TEN_MINUTES),
            Err(VoucherRefusal::Locked)
        );
        assert_eq!(locked.state_at(at(600)), VoucherState::Issued);
        assert!(locked.lock(at(600), TEN_MINUTES).is_ok());
        assert_eq!(locked.unlock(at(600)), Err(VoucherRefusal::NotLocked));
        assert_eq!(locked.expire_lock(at(599)), None);
        assert_eq!(
            locked.expire_lock(at(600)).unwrap().state,
            VoucherState::Issued
        );
    }

    #[test]
    fn an_expired_voucher_is_refused() {
        assert_eq!(issued(1).redeem(at(1_000)), Err(VoucherRefusal::Expired));
        assert_eq!(
            issued(1).lock(at(1_000), TEN_MINUTES),
            Err(VoucherRefusal::Expired)
        );
    }

    #[test]
    fn a_reservation_is_not_redeemable() {
        let reserved = Redemption {
            state: VoucherState::Reserved,
            ..issued(1)
        };
        assert_eq!(reserved.redeem(at(0)), Err(VoucherRefusal::NotIssued));
        assert_eq!(
            reserved.lock(at(0), TEN_MINUTES),
            Err(VoucherRefusal::NotIssued)
        );
    }
}
