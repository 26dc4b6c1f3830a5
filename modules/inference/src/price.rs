//! The per-block price rule (SPEC §5 "Price"), integer arithmetic only.

use crate::params::InferenceParams;

/// Utilisation of the block, in basis points of `capacity` (capped at
/// 10 000: a block may take more than its capacity, it cannot push the
/// price faster than the cap).
pub fn utilisation_bps(used: u64, capacity: u64) -> u64 {
    if capacity == 0 {
        return 10_000;
    }
    let bps = u128::from(used) * 10_000 / u128::from(capacity);
    u64::try_from(bps.min(10_000)).unwrap_or(10_000)
}

/// The price after a block that used `used` of the model's `capacity`
/// tokens: unchanged inside `[low, high]`; below the band it falls, above it
/// rises, in proportion to the distance from the band, by at most
/// `max_price_step_bps` (reached at 0% and 100%); a change is at least one
/// pkiln, so a small price can move; never below `floor` (a price under a
/// raised floor moves up to it).
pub fn next_price(price: u64, floor: u64, used: u64, p: &InferenceParams) -> u64 {
    let util = utilisation_bps(used, p.block_token_capacity);
    let (low, high) = (p.utilisation_low_bps, p.utilisation_high_bps);
    let step = |distance: u64, span: u64| -> u64 {
        // delta = price · max_step_bps/10⁴ · distance/span, rounded down, at
        // least 1 outside the band. 64 × 14 × 14 bits: fits in u128.
        let delta = u128::from(price) * u128::from(p.max_price_step_bps) * u128::from(distance)
            / (10_000 * u128::from(span.max(1)));
        u64::try_from(delta.max(1)).unwrap_or(u64::MAX)
    };
    let next = if util < low {
        price.saturating_sub(step(low - util, low))
    } else if util > high {
        price.saturating_add(step(util - high, 10_000 - high))
    } else {
        price
    };
    next.max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> InferenceParams {
        InferenceParams {
            block_token_capacity: 10_000,
            ..Default::default()
        }
    }

    #[test]
    fn inside_the_band_the_price_holds() {
        for used in [4_000, 5_000, 6_000] {
            assert_eq!(next_price(1_000_000, 10, used, &params()), 1_000_000);
        }
    }

    #[test]
    fn empty_and_full_blocks_move_the_price_by_the_whole_step() {
        assert_eq!(next_price(1_000_000, 10, 0, &params()), 980_000);
        assert_eq!(next_price(1_000_000, 10, 10_000, &params()), 1_020_000);
        // Over capacity moves it no faster.
        assert_eq!(next_price(1_000_000, 10, 50_000, &params()), 1_020_000);
        // Halfway between the band and the extreme: half the step.
        assert_eq!(next_price(1_000_000, 10, 2_000, &params()), 990_000);
        assert_eq!(next_price(1_000_000, 10, 8_000, &params()), 1_010_000);
    }

    #[test]
    fn the_floor_holds_and_small_prices_still_move() {
        assert_eq!(next_price(1_000, 995, 0, &params()), 995);
        assert_eq!(next_price(10, 1, 10_000, &params()), 11);
        assert_eq!(next_price(10, 1, 0, &params()), 9);
        // A floor raised above the price lifts it.
        assert_eq!(next_price(500, 700, 5_000, &params()), 700);
        assert_eq!(next_price(u64::MAX, 1, 10_000, &params()), u64::MAX);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Whatever the block: at most ±max_step (at least one pkiln), never
        /// below the floor, never against the band's direction.
        #[test]
        fn the_price_moves_at_most_one_step_toward_the_band(
            price in 1u64..u64::MAX / 2,
            floor in 0u64..1_000_000,
            used in 0u64..30_000,
        ) {
            let p = params();
            let next = next_price(price, floor, used, &p);
            prop_assert!(next >= floor);
            let bound = (u128::from(price) * 200 / 10_000).max(1);
            let util = utilisation_bps(used, p.block_token_capacity);
            if price >= floor {
                let moved = u128::from(next.abs_diff(price));
                prop_assert!(moved <= bound.max(u128::from(floor.saturating_sub(price))), "{price} -> {next}");
            }
            if (4_000..=6_000).contains(&util) {
                prop_assert_eq!(next, price.max(floor));
            } else if util > 6_000 {
                prop_assert!(next > price || next == u64::MAX);
            } else {
                prop_assert!(next < price || next == floor);
            }
        }
    }
}
