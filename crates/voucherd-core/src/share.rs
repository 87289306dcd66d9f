//! How nodes share one gateway's rate, decided once here and applied by
//! each store inside the transaction that records it.
//!
//! A gateway's `rate` is the deployment's, not a node's. Each node leases a
//! share of it for a short while and renews the lease a few times a second.
//! A lease row counts against the rate from when it was granted until a
//! window after the node may last use it (`counted_until`): the gateway
//! counts a charge in the second it arrives, and a node that sent at its
//! share until its lease ran out may have sends inside the gateway's window
//! for one window more. A node's rows count at their largest share, so a
//! node that shrinks keeps its larger share counted until those rows lapse,
//! and nobody else can use that room while its last sends are still being
//! counted by the gateway.
//!
//! The sum of every node's counted share never exceeds the rate: a grant is
//! at most what the other nodes' counted shares leave. When another node
//! wants more than it holds, a node is granted at most an even split among
//! the nodes that want some, so a new node gets its part within a lease or
//! two; a dead node's rows lapse by themselves.

use std::collections::HashMap;

/// One lease row of a gateway, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLease {
    pub node: String,
    pub share: u32,
    pub want: u32,
    /// When it was granted, in milliseconds: a node's latest row says what
    /// it holds and wants now.
    pub granted_at_ms: i64,
}

/// The share of `rate` a node asking for `want` is granted, given the
/// lease rows of the gateway still counted now (the node's own included).
pub fn share_of(rate: u32, node: &str, want: u32, leases: &[ShareLease]) -> u32 {
    let mut counted: HashMap<&str, u32> = HashMap::new();
    let mut latest: HashMap<&str, &ShareLease> = HashMap::new();
    for lease in leases {
        let most = counted.entry(&lease.node).or_default();
        *most = (*most).max(lease.share);
        let newest = latest.entry(&lease.node).or_insert(lease);
        if lease.granted_at_ms > newest.granted_at_ms {
            *newest = lease;
        }
    }
    let others: u64 = counted
        .iter()
        .filter(|(holder, _)| **holder != node)
        .map(|(_, share)| u64::from(*share))
        .sum();
    let free = u64::from(rate).saturating_sub(others);
    let wanting: Vec<&&ShareLease> = latest
        .iter()
        .filter(|(holder, lease)| **holder != node && lease.want > 0)
        .map(|(_, lease)| lease)
        .collect();
    let starving = wanting.iter().any(|lease| lease.want > lease.share);
    let cap = if starving {
        // An even split among the nodes that want some, this one included.
        u64::from(rate) / (wanting.len() as u64 + 1)
    } else {
        u64::from(rate)
    };
    let granted = u64::from(want).min(free).min(cap);
    let granted = u32::try_from(granted).expect("a grant is at most the rate");
    assert!(u64::from(granted) + others <= u64::from(rate).max(others));
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(node: &str, share: u32, want: u32, granted_at_ms: i64) -> ShareLease {
        ShareLease {
            node: node.into(),
            share,
            want,
            granted_at_ms,
        }
    }

    #[test]
    fn a_node_alone_gets_what_it_wants_up_to_the_rate() {
        assert_eq!(share_of(100, "a", 100, &[]), 100);
        assert_eq!(share_of(100, "a", 250, &[]), 100);
        assert_eq!(share_of(100, "a", 30, &[lease("a", 100, 100, 1)]), 30);
    }

    #[test]
    fn a_grant_never_takes_what_another_node_still_counts() {
        let leases = [lease("a", 70, 100, 1)];
        assert_eq!(share_of(100, "b", 100, &leases), 30);
        // A shrunk node's larger share is counted until its row lapses.
        let leases = [lease("a", 100, 100, 1), lease("a", 50, 100, 2)];
        assert_eq!(share_of(100, "b", 100, &leases), 0);
    }

    #[test]
    fn a_node_that_holds_everything_yields_to_one_that_waits() {
        let leases = [lease("a", 100, 100, 1), lease("b", 0, 100, 2)];
        assert_eq!(share_of(100, "a", 100, &leases), 50);
        let leases = [
            lease("a", 100, 100, 1),
            lease("b", 0, 100, 2),
            lease("c", 0, 100, 2),
        ];
        assert_eq!(share_of(100, "a", 100, &leases), 33);
        // Nobody waiting: no reason to yield.
        let leases = [lease("a", 60, 60, 1), lease("b", 40, 40, 2)];
        assert_eq!(share_of(100, "a", 100, &leases), 60);
    }

    #[test]
    fn counted_shares_never_sum_past_the_rate() {
        // Nodes asking in turn, with every grant recorded as a new row.
        let mut leases: Vec<ShareLease> = Vec::new();
        for step in 0..300_i64 {
            let node = ["a", "b", "c"][(step % 3) as usize];
            let want = [100, 0, 100, 40, 100][(step % 5) as usize];
            let granted = share_of(100, node, want, &leases);
            leases.push(lease(node, granted, want, step));
            // Rows lapse after six more grants.
            leases.retain(|row| row.granted_at_ms > step - 6);
            let mut counted: HashMap<&str, u32> = HashMap::new();
            for row in &leases {
                let most = counted.entry(&row.node).or_default();
                *most = (*most).max(row.share);
            }
            assert!(
                counted.values().sum::<u32>() <= 100,
                "step {step}: {leases:?}"
            );
        }
    }
}
