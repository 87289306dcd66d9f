//! The scenarios' campaigns scaled to a supply.

use voucherd_load::scenario::coupons::daily_supplies;
use voucherd_load::scenario::sale::hot_deal_tiers;

#[test]
fn the_hot_deal_keeps_seed_000s_tiers_at_any_supply() {
    let check = |supply: u32, expected: &[(u32, u8)]| {
        assert_eq!(hot_deal_tiers(supply), expected, "supply {supply}");
    };
    check(20_000, &[(1_000, 90), (10_000, 70), (20_000, 50)]);
    check(500, &[(25, 90), (250, 70), (500, 50)]);
    check(30, &[(2, 90), (15, 70), (30, 50)]);
    check(1, &[(1, 90)]);
}

#[test]
fn the_daily_coupons_share_the_supply_and_each_has_one() {
    for supply in [3, 4, 10, 75, 1_000] {
        let supplies = daily_supplies(supply);
        assert_eq!(supplies.iter().sum::<u32>(), supply, "{supplies:?}");
        assert!(supplies.iter().all(|each| *each >= 1), "{supplies:?}");
    }
    assert_eq!(daily_supplies(75), [37, 22, 16]);
}
