//! What staging, committing and discarding an upload's codes decide, the
//! same for every backend (see [`CodesLease`]). A backend reads the
//! campaign's row, locked for the rest of its job or transaction, into a
//! [`CodesHolder`], asks these functions what to do, and does it.

use std::collections::HashSet;

use voucherd_core::Timestamp;
use voucherd_core::campaign::Lifecycle;
use voucherd_core::code::VoucherCode;

use crate::StoreResult;
use crate::model::{AddCodesOutcome, CodesLease, CommitOutcome, StageOutcome};
use crate::stored::{corrupt, count};

/// The upload holding a campaign: who, how many rows it staged, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upload {
    pub id: uuid::Uuid,
    pub staged: i64,
    pub until: Timestamp,
}

/// What the decisions read of a campaign.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodesHolder {
    pub lifecycle: Lifecycle,
    pub supply: Option<i64>,
    pub voucher_count: i64,
    pub upload: Option<Upload>,
}

/// Where a slice goes: its first rank, with what the lease staged before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub staged: i64,
    pub first_rank: i64,
}

impl Slot {
    /// Whether rows an interrupted upload left may lie past the first
    /// rank: until the lease staged its first code, it may have taken the
    /// campaign from one (and removes them a job at a time); after, a
    /// probe found none.
    pub(crate) fn may_find_leftovers(&self) -> bool {
        self.staged == 0
    }
}

impl CodesHolder {
    pub(crate) fn new(
        lifecycle: &str,
        supply: Option<i64>,
        voucher_count: i64,
        upload: Option<(uuid::Uuid, i64, Timestamp)>,
    ) -> StoreResult<Self> {
        let lifecycle = Lifecycle::parse(lifecycle).ok_or_else(|| corrupt(lifecycle))?;
        let upload = upload.map(|(id, staged, until)| Upload { id, staged, until });
        // Staged rows exist only on drafts: a campaign goes live only free.
        if upload.is_some() && lifecycle != Lifecycle::Draft {
            return Err(corrupt(format!(
                "a {} campaign is held by an upload",
                lifecycle.as_str()
            )));
        }
        Ok(Self {
            lifecycle,
            supply,
            voucher_count,
            upload,
        })
    }

    /// Whether `lease` may stage here, and from which rank: its own upload
    /// goes on after what it staged; a free campaign, or one whose holder's
    /// lease ran out, is taken afresh (the rows past `first_rank - 1` are
    /// then the interrupted upload's, to remove first).
    pub(crate) fn slot(&self, lease: &CodesLease) -> Result<Slot, StageOutcome> {
        if self.lifecycle != Lifecycle::Draft {
            return Err(StageOutcome::NotDraft);
        }
        let staged = match self.upload {
            Some(upload) if upload.id == lease.id => {
                if upload.staged != i64::from(lease.staged) {
                    return Err(StageOutcome::Lost);
                }
                upload.staged
            }
            Some(upload) if upload.until > lease.now => return Err(StageOutcome::Busy),
            // Taken from this lease, and let go again: its rows are gone.
            _ if lease.staged > 0 => return Err(StageOutcome::Lost),
            _ => 0,
        };
        Ok(Slot {
            staged,
            first_rank: self.voucher_count + staged + 1,
        })
    }

    /// The lease's staged count with `fresh` more codes, unless they pass
    /// the supply.
    pub(crate) fn fits(&self, slot: Slot, fresh: usize) -> StoreResult<Result<i64, StageOutcome>> {
        let room = self
            .supply
            .map_or(i64::MAX, |supply| supply - self.voucher_count);
        let offered = slot.staged + i64::try_from(fresh).map_err(corrupt)?;
        if offered > room {
            return Ok(Err(StageOutcome::OverSupply {
                room: count(room)?,
                offered: count(offered)?,
            }));
        }
        Ok(Ok(offered))
    }

    /// What committing `lease` counts: the campaign's new `voucher_count`.
    pub(crate) fn commit(&self, lease: uuid::Uuid) -> StoreResult<Result<i64, CommitOutcome>> {
        let Some(upload) = self.upload.filter(|upload| upload.id == lease) else {
            return Ok(Err(CommitOutcome::Lost));
        };
        Ok(Ok(self.voucher_count + upload.staged))
    }

    /// Whether `lease` still holds the campaign, so that its rows are its
    /// own to remove.
    pub(crate) fn held_by(&self, lease: uuid::Uuid) -> bool {
        self.upload.is_some_and(|upload| upload.id == lease)
    }
}

/// Which codes are new, in the order given: a code repeated in the slice or
/// one the tenant has already (`known`) is a duplicate, never merged.
pub(crate) fn split_fresh(
    codes: &[VoucherCode],
    mut known: impl FnMut(&VoucherCode) -> StoreResult<bool>,
) -> StoreResult<(Vec<&VoucherCode>, Vec<VoucherCode>)> {
    let mut seen = HashSet::with_capacity(codes.len());
    let mut fresh = Vec::with_capacity(codes.len());
    let mut duplicates = Vec::new();
    for code in codes {
        if !seen.insert(code) || known(code)? {
            duplicates.push(code.clone());
        } else {
            fresh.push(code);
        }
    }
    Ok((fresh, duplicates))
}

/// The answer to a slice staged: `fresh` new codes, `staged` in all.
pub(crate) fn staged(
    fresh: usize,
    duplicates: Vec<VoucherCode>,
    staged: i64,
) -> StoreResult<StageOutcome> {
    Ok(StageOutcome::Staged {
        added: u32::try_from(fresh).map_err(corrupt)?,
        duplicates,
        staged: count(staged)?,
    })
}

/// The answer to a commit that counted `voucher_count - before` rows.
pub(crate) fn committed(before: i64, voucher_count: i64) -> StoreResult<CommitOutcome> {
    Ok(CommitOutcome::Committed {
        added: count(voucher_count - before)?,
        voucher_count: count(voucher_count)?,
    })
}

/// The lease of a one-job [`crate::Store::add_codes`]: nobody can come
/// between its staging and its commit, so it needs no time beyond `now`.
pub(crate) fn one_job_lease(now: Timestamp) -> CodesLease {
    CodesLease {
        id: uuid::Uuid::new_v4(),
        now,
        until: now,
        staged: 0,
    }
}

/// What a one-job add answers once its slice was staged and committed.
pub(crate) fn added(duplicates: Vec<VoucherCode>, committed: CommitOutcome) -> AddCodesOutcome {
    match committed {
        CommitOutcome::Committed {
            added,
            voucher_count,
        } => AddCodesOutcome::Added {
            added,
            duplicates,
            voucher_count,
        },
        // Nobody else writes inside the job: another holder means a bug.
        CommitOutcome::Lost => AddCodesOutcome::Busy,
        CommitOutcome::NotFound => AddCodesOutcome::NotFound,
    }
}

/// What a one-job add answers when its slice was not staged (`Staged` and
/// `Cleaning` are the caller's to go on with).
pub(crate) fn refused(staged: StageOutcome) -> AddCodesOutcome {
    match staged {
        StageOutcome::OverSupply { room, offered } => AddCodesOutcome::OverSupply { room, offered },
        StageOutcome::NotDraft => AddCodesOutcome::NotDraft,
        StageOutcome::NotFound => AddCodesOutcome::NotFound,
        StageOutcome::Busy
        | StageOutcome::Lost
        | StageOutcome::Staged { .. }
        | StageOutcome::Cleaning => AddCodesOutcome::Busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn lease(id: u128, now: i64) -> CodesLease {
        CodesLease {
            id: uuid::Uuid::from_u128(id),
            now: at(now),
            until: at(now + 30),
            staged: 0,
        }
    }

    fn held(by: u128, staged: i64, until: i64) -> CodesHolder {
        CodesHolder::new(
            "draft",
            Some(100),
            10,
            Some((uuid::Uuid::from_u128(by), staged, at(until))),
        )
        .unwrap()
    }

    #[test]
    fn a_lease_goes_on_after_its_own_rows_and_waits_for_anothers() {
        let own = held(1, 5, 100);
        let going_on = CodesLease {
            staged: 5,
            ..lease(1, 50)
        };
        assert_eq!(
            own.slot(&going_on),
            Ok(Slot {
                staged: 5,
                first_rank: 16
            })
        );
        assert_eq!(
            own.slot(&lease(1, 50)),
            Err(StageOutcome::Lost),
            "a holder that counts otherwise than the campaign lost rows"
        );
        let free = CodesLease {
            staged: 5,
            ..lease(1, 200)
        };
        assert_eq!(
            CodesHolder::new("draft", None, 3, None)
                .unwrap()
                .slot(&free),
            Err(StageOutcome::Lost),
            "a lease that lost its campaign never takes it back half-way"
        );
        assert_eq!(own.slot(&lease(2, 50)), Err(StageOutcome::Busy));
        assert_eq!(
            own.slot(&lease(2, 100)),
            Ok(Slot {
                staged: 0,
                first_rank: 11
            }),
            "a lease that ran out is taken, from the first uncounted rank"
        );
        let free = CodesHolder::new("draft", None, 3, None).unwrap();
        assert_eq!(free.slot(&lease(2, 0)).unwrap().first_rank, 4);
        let live = CodesHolder::new("live", None, 3, None).unwrap();
        assert_eq!(live.slot(&lease(2, 0)), Err(StageOutcome::NotDraft));
        assert!(
            CodesHolder::new("live", None, 3, Some((uuid::Uuid::nil(), 0, at(0)))).is_err(),
            "a live campaign never holds staged rows"
        );
    }

    #[test]
    fn the_supply_bounds_what_a_lease_stages_in_all() {
        let own = held(1, 85, 100);
        let slot = own
            .slot(&CodesLease {
                staged: 85,
                ..lease(1, 0)
            })
            .unwrap();
        assert_eq!(own.fits(slot, 5).unwrap(), Ok(90));
        assert_eq!(
            own.fits(slot, 6).unwrap(),
            Err(StageOutcome::OverSupply {
                room: 90,
                offered: 91
            })
        );
    }

    #[test]
    fn only_the_holder_commits() {
        let own = held(1, 7, 100);
        assert_eq!(own.commit(uuid::Uuid::from_u128(1)).unwrap(), Ok(17));
        assert_eq!(
            own.commit(uuid::Uuid::from_u128(2)).unwrap(),
            Err(CommitOutcome::Lost)
        );
        assert!(own.held_by(uuid::Uuid::from_u128(1)));
        assert!(!own.held_by(uuid::Uuid::from_u128(2)));
    }

    #[test]
    fn duplicates_are_repeats_and_known_codes_in_order() {
        let codes: Vec<VoucherCode> = ["A", "B", "A", "C", "D"]
            .iter()
            .map(|code| VoucherCode::parse(code).unwrap())
            .collect();
        let (fresh, duplicates) = split_fresh(&codes, |code| Ok(code.as_str() == "C")).unwrap();
        let fresh: Vec<&str> = fresh.iter().map(|code| code.as_str()).collect();
        let duplicates: Vec<&str> = duplicates.iter().map(VoucherCode::as_str).collect();
        assert_eq!(fresh, ["A", "B", "D"]);
        assert_eq!(duplicates, ["A", "C"]);
    }
}
