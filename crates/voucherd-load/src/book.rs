//! What happened to each user, in two bytes per user indexed by user
//! number (a million users cost two megabytes), and the vouchers and paid
//! orders the server acknowledged, kept for the verdict.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::verdict::{Acknowledged, PaidOrder, UserRecord};

/// Where a user's visit ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserOutcome {
    /// Not arrived yet, or still going.
    #[default]
    Pending,
    /// The in-flight bound was full when the user arrived: never sent.
    DroppedByClient,
    /// Baseline: answered.
    Served,
    /// Holds a voucher (issued, or reserved when checkout is off).
    Claimed,
    /// Checked out and the order was paid.
    Paid,
    /// Checked out and the order failed; the buyer gave the reservation back.
    PaymentFailed,
    /// Checked out, but the order was still pending when waiting ended.
    OrderUnsettled,
    /// Told nothing is left (sold out, or a login that granted nothing).
    SoldOut,
    /// Still refused with 429/503 after every retry.
    GaveUp,
    /// An unexpected answer or no answer.
    Failed,
    /// Still going when the run's drain time ran out.
    Unfinished,
}

impl UserOutcome {
    pub const ALL: [UserOutcome; 11] = [
        UserOutcome::Pending,
        UserOutcome::DroppedByClient,
        UserOutcome::Served,
        UserOutcome::Claimed,
        UserOutcome::Paid,
        UserOutcome::PaymentFailed,
        UserOutcome::OrderUnsettled,
        UserOutcome::SoldOut,
        UserOutcome::GaveUp,
        UserOutcome::Failed,
        UserOutcome::Unfinished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UserOutcome::Pending => "pending",
            UserOutcome::DroppedByClient => "dropped_by_client",
            UserOutcome::Served => "served",
            UserOutcome::Claimed => "claimed",
            UserOutcome::Paid => "paid",
            UserOutcome::PaymentFailed => "payment_failed",
            UserOutcome::OrderUnsettled => "order_unsettled",
            UserOutcome::SoldOut => "sold_out",
            UserOutcome::GaveUp => "gave_up",
            UserOutcome::Failed => "failed",
            UserOutcome::Unfinished => "unfinished",
        }
    }

    fn index(self) -> usize {
        UserOutcome::ALL
            .iter()
            .position(|outcome| *outcome == self)
            .unwrap_or(0)
    }
}

/// Every user's record and what the server acknowledged.
#[derive(Debug)]
pub struct Book {
    users: Mutex<Vec<UserRecord>>,
    counts: [AtomicU64; UserOutcome::ALL.len()],
    acknowledged: Mutex<Vec<Acknowledged>>,
    paid: Mutex<Vec<PaidOrder>>,
    /// New vouchers acknowledged so far, for the progress line.
    pub new_vouchers: AtomicU64,
    /// A repeated claim or login that answered another voucher than the
    /// one the user was given.
    pub repeat_mismatches: AtomicU64,
    /// A repeated login that did not list the voucher the user holds.
    pub repeat_omissions: AtomicU64,
}

impl Book {
    pub fn new(users: u64) -> Book {
        Book {
            users: Mutex::new(vec![UserRecord::default(); users as usize]),
            counts: Default::default(),
            acknowledged: Mutex::new(Vec::new()),
            paid: Mutex::new(Vec::new()),
            new_vouchers: AtomicU64::new(0),
            repeat_mismatches: AtomicU64::new(0),
            repeat_omissions: AtomicU64::new(0),
        }
    }

    /// Sets where a user's visit ended (or has got to).
    pub fn set(&self, user: u32, outcome: UserOutcome) {
        let mut users = self.users.lock().expect("the book's lock");
        let Some(record) = users.get_mut(user as usize) else {
            return;
        };
        let previous = std::mem::replace(&mut record.outcome, outcome);
        drop(users);
        if previous != UserOutcome::Pending {
            self.counts[previous.index()].fetch_sub(1, Ordering::Relaxed);
        }
        self.counts[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The user ends as `outcome` unless already past pending; answers
    /// whether it was pending.
    pub fn set_if_pending(&self, user: u32, outcome: UserOutcome) -> bool {
        let mut users = self.users.lock().expect("the book's lock");
        let Some(record) = users.get_mut(user as usize) else {
            return false;
        };
        if record.outcome != UserOutcome::Pending {
            return false;
        }
        record.outcome = outcome;
        drop(users);
        self.counts[outcome.index()].fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A new voucher (a `201`, or a login's grant) for the user.
    pub fn acknowledge(&self, acknowledged: Acknowledged) {
        if let Some(record) = self
            .users
            .lock()
            .expect("the book's lock")
            .get_mut(acknowledged.user as usize)
        {
            record.new_vouchers = record.new_vouchers.saturating_add(1);
        }
        self.new_vouchers.fetch_add(1, Ordering::Relaxed);
        self.acknowledged
            .lock()
            .expect("the book's lock")
            .push(acknowledged);
    }

    pub fn paid(&self, order: PaidOrder) {
        self.paid.lock().expect("the book's lock").push(order);
    }

    pub fn count(&self, outcome: UserOutcome) -> u64 {
        self.counts[outcome.index()].load(Ordering::Relaxed)
    }

    /// Hands the records over for the verdict, leaving the book empty.
    pub fn take(&self) -> (Vec<UserRecord>, Vec<Acknowledged>, Vec<PaidOrder>) {
        (
            std::mem::take(&mut *self.users.lock().expect("the book's lock")),
            std::mem::take(&mut *self.acknowledged.lock().expect("the book's lock")),
            std::mem::take(&mut *self.paid.lock().expect("the book's lock")),
        )
    }
}
