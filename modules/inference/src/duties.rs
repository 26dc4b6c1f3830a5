//! Validation duties (SPEC §5 "Validation"): who must replay which
//! inference, decided by secrets the hosts committed before the inferences
//! existed, and checked by the chain afterwards.
//!
//! **Serving periods.** Serving is counted per *period*: period `P` runs
//! from the block after epoch `P`'s settle to epoch `P + 1`'s settle
//! (period 0 from genesis to the first settle). The serving set, and so
//! each host's weight, is fixed for a period.
//!
//! **Seeds.** Each host commits `SHA256("kiln/validation-seed/v1" ‖
//! chain_id ‖ period ‖ host ‖ seed)` for period `P` while period `P − 1` or
//! `P` runs (`MsgCommitValidationSeed`), and reveals the seed while period
//! `P + 1` runs (`MsgRevealValidationSeed`). Binding the chain, period and
//! host into the commitment keeps a commitment from being copied.
//!
//! **Duty.** Host `v` must validate inference `i` (finished in period `P`)
//! when `SHA256(seed_v ‖ id) / 2^256 < p(v, i)`, where
//! `p(v, i) = min(1, m_i · w_v / W_i)`: `w_v` is `v`'s serving weight,
//! `W_i` the weight of the model's hosts other than the executor, and
//! `m_i = base + (1 − reputation_executor / 100)(1 − base)` the expected
//! number of validations of `i` ([`expected_validations_micro`]). `base`
//! follows the model's traffic in the previous period ([`base_rate_micro`]).
//! The chain fixes `m_i` when the inference finishes and emits it
//! (`validation_rate_micro` on `EventInferenceFinished`), so a worker
//! decides its duty from the same numbers the chain later checks.
//!
//! **Recompute.** At the settle that closes period `P + 1` every revealed
//! seed's duties for period `P` are recomputed and each host's
//! [`DutyRecord`] written: duties assigned, performed and skipped. A host
//! that did not commit before an inference finished, or never revealed,
//! is charged the expected number of duties (`Σ p`) as both assigned and
//! skipped, so withholding a seed never pays. The rewards step reads the
//! records (SPEC §5: a host that skipped duties loses that share of its
//! reward).
//!
//! All amounts are integers in millionths ("micro").

use std::collections::BTreeMap;

use kiln_framework::msg::address_field;
use kiln_framework::{Address, Event, ExecCtx, StateReadExt, StateWriteExt, TxResult};
use kiln_state::{StateRead, StateWrite};
use sha2::{Digest, Sha256};

use crate::handler::{codes, err};
use crate::keys;
use crate::msgs::{MsgCommitValidationSeed, MsgRevealValidationSeed};
use crate::state::ServingSet;

/// One whole validation, in millionths.
pub const ONE: u64 = 1_000_000;

/// Serving periods whose duty records are kept (for queries and the
/// rewards step) before they are pruned.
pub const DUTY_RECORDS_KEPT: u64 = 4;

/// SPEC §5's traffic floor `base`, in millionths, for a model that served
/// `traffic` inferences in the previous period: 100% at ≤ 100, 5% at
/// 5 000, 1% at ≥ 10 000, linear in between (protocol note: SPEC gives the
/// three points; Kiln joins them with straight lines).
pub fn base_rate_micro(traffic: u64) -> u64 {
    const POINTS: [(u64, u64); 3] = [(100, ONE), (5_000, 50_000), (10_000, 10_000)];
    if traffic <= POINTS[0].0 {
        return POINTS[0].1;
    }
    for pair in POINTS.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if traffic <= x1 {
            // y0 > y1: the rate falls from y0 to y1 across [x0, x1].
            let fall = u128::from(y0 - y1) * u128::from(traffic - x0) / u128::from(x1 - x0);
            return y0 - u64::try_from(fall).unwrap_or(y0 - y1);
        }
    }
    POINTS[2].1
}

/// `m = base + (1 − reputation/100)(1 − base)` in millionths (reputation in
/// [0, 100]; above 100 counts as 100).
pub fn expected_validations_micro(base_micro: u64, executor_reputation: u64) -> u64 {
    let base = base_micro.min(ONE);
    let missing = 100 - executor_reputation.min(100);
    base + missing * (ONE - base) / 100
}

/// `p(v, i) = min(1, m · w_v / W)` in millionths; 0 when `W` is 0.
pub fn duty_probability_micro(rate_micro: u64, weight: u64, others_weight: u64) -> u64 {
    if others_weight == 0 {
        return 0;
    }
    let p = u128::from(rate_micro) * u128::from(weight) / u128::from(others_weight);
    u64::try_from(p).unwrap_or(ONE).min(ONE)
}

/// Whether `SHA256(seed ‖ id) / 2^256 < p` (compared on the first 64 bits:
/// `h / 2^64 < p / 10^6`).
pub fn is_assigned(seed: &[u8; 32], id: &[u8; 32], probability_micro: u64) -> bool {
    if probability_micro >= ONE {
        return true;
    }
    let digest = Sha256::new().chain_update(seed).chain_update(id).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u128::from(u64::from_be_bytes(first)) * u128::from(ONE) < u128::from(probability_micro) << 64
}

/// The commitment to a validation seed.
pub fn seed_commitment(chain_id: &str, period: u64, host: &Address, seed: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"kiln/validation-seed/v1");
    h.update((chain_id.len() as u32).to_be_bytes());
    h.update(chain_id.as_bytes());
    h.update(period.to_be_bytes());
    h.update(host.as_bytes());
    h.update(seed);
    h.finalize().into()
}

/// `v`'s duty probability for an inference of `set`'s model executed by
/// `executor` at rate `rate_micro` (0 when `v` is the executor or not in
/// the set).
pub fn probability_in(set: &ServingSet, executor: &Address, v: &Address, rate_micro: u64) -> u64 {
    if v == executor {
        return 0;
    }
    let mut mine = 0u64;
    let mut others = 0u64;
    for e in &set.entries {
        if e.host == *executor {
            continue;
        }
        if e.host == *v {
            mine = e.weight;
        }
        others = others.saturating_add(e.weight);
    }
    duty_probability_micro(rate_micro, mine, others)
}

/// A host's seed for one period.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct SeedCommit {
    pub commitment: [u8; 32],
    /// Its duties cover inferences finished after this height.
    pub commit_height: u64,
    pub seed: Option<[u8; 32]>,
}

kiln_framework::stored_value!(SeedCommit, "validation seed", 1);

/// A finished inference owed validations, until its period's duties are
/// recomputed.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct DutyEntry {
    pub executor: Address,
    pub model: String,
    /// `m`, fixed at the finish (millionths).
    pub rate_micro: u64,
    pub finish_height: u64,
    /// Hosts that posted a validation of it, in arrival order.
    pub validators: Vec<Address>,
}

kiln_framework::stored_value!(DutyEntry, "validation duty entry", 1);

/// What a host owed and did in one period (SPEC §5: the rewards step
/// reduces its share by `skipped / assigned`).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct DutyRecord {
    /// Duties in millionths: whole ones from a revealed seed, expected
    /// ones (`Σ p`) where no seed covered the inference.
    pub assigned_micro: u64,
    /// Of those, validated.
    pub performed: u64,
    pub skipped_micro: u64,
    /// The host revealed its seed for the period.
    pub revealed: bool,
}

kiln_framework::stored_value!(DutyRecord, "validation duty record", 1);

/// The serving period in force: the epoch of the last settle (0 before it).
pub fn current_period<S: StateRead + ?Sized>(state: &S) -> TxResult<u64> {
    Ok(state.get_u64(keys::PERIOD)?.unwrap_or(0))
}

/// `m` for an inference of `model` executed by `executor`, finished now.
pub fn rate_for<S: StateRead + ?Sized>(
    state: &S,
    model: &str,
    executor: &Address,
) -> TxResult<u64> {
    let traffic = state.get_u64(&keys::traffic(model))?.unwrap_or(0);
    let reputation = kiln_reputation::reputation(state, executor)?;
    Ok(expected_validations_micro(
        base_rate_micro(traffic),
        reputation,
    ))
}

/// At a finish: the inference joins its period's duty list.
pub fn on_finish<S: StateWrite>(
    state: &mut S,
    period: u64,
    id: &[u8; 32],
    entry: &DutyEntry,
) -> TxResult<()> {
    state.put_value(keys::duty(period, id), entry)
}

/// At a validation: counts it toward `validator`'s duty (no-op once the
/// period was recomputed).
pub fn on_validation<S: StateWrite>(
    state: &mut S,
    period: u64,
    id: &[u8; 32],
    validator: &Address,
) -> TxResult<()> {
    let key = keys::duty(period, id);
    if let Some(mut entry) = state.get_value::<DutyEntry>(&key)? {
        if !entry.validators.contains(validator) {
            entry.validators.push(*validator);
            state.put_value(key, &entry)?;
        }
    }
    Ok(())
}

fn bytes32(value: &[u8], field: &str) -> TxResult<[u8; 32]> {
    <[u8; 32]>::try_from(value).map_err(|_| {
        err(
            codes::BAD_FIELD,
            format!("{field} must be 32 bytes, got {}", value.len()),
        )
    })
}

/// `MsgCommitValidationSeed`.
pub fn commit<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgCommitValidationSeed,
) -> TxResult<()> {
    let host = address_field(&msg.host, "host")?;
    let commitment = bytes32(&msg.commitment, "commitment")?;
    let current = current_period(state)?;
    if msg.period != current && Some(msg.period) != current.checked_add(1) {
        return Err(err(
            codes::SEED_OUT_OF_PERIOD,
            format!(
                "period {} is not open for seed commitments: the serving period is {current}, commit for {current} or {}",
                msg.period,
                current.saturating_add(1)
            ),
        ));
    }
    if !kiln_hosts::HostsExt::is_host(state, &host)? {
        return Err(err(
            codes::NOT_A_HOST,
            format!("{host} is not a registered host"),
        ));
    }
    let key = keys::seed(msg.period, &host);
    if let Some(existing) = state.get_value::<SeedCommit>(&key)? {
        return Err(err(
            codes::SEED_ALREADY_COMMITTED,
            format!(
                "{host} already committed a validation seed for period {} at height {}",
                msg.period, existing.commit_height
            ),
        ));
    }
    let height = ctx.block.height;
    state.put_value(
        key,
        &SeedCommit {
            commitment,
            commit_height: height,
            seed: None,
        },
    )?;
    ctx.emit(
        Event::new("kiln.inference.v1.EventValidationSeedCommitted")
            .attr("host", host)
            .attr("period", msg.period),
    );
    Ok(())
}

/// `MsgRevealValidationSeed`.
pub fn reveal<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgRevealValidationSeed,
) -> TxResult<()> {
    let host = address_field(&msg.host, "host")?;
    let seed = bytes32(&msg.seed, "seed")?;
    let current = current_period(state)?;
    if msg.period.checked_add(1) != Some(current) {
        return Err(err(
            codes::SEED_OUT_OF_PERIOD,
            format!(
                "the seed of period {} is revealed while period {} runs; the serving period is {current}",
                msg.period,
                msg.period.saturating_add(1)
            ),
        ));
    }
    let key = keys::seed(msg.period, &host);
    let Some(mut commit) = state.get_value::<SeedCommit>(&key)? else {
        return Err(err(
            codes::SEED_NOT_COMMITTED,
            format!(
                "{host} committed no validation seed for period {}",
                msg.period
            ),
        ));
    };
    if commit.seed.is_some() {
        return Err(err(
            codes::SEED_ALREADY_REVEALED,
            format!("{host} already revealed its seed for period {}", msg.period),
        ));
    }
    if seed_commitment(&ctx.block.chain_id, msg.period, &host, &seed) != commit.commitment {
        return Err(err(
            codes::SEED_MISMATCH,
            format!(
                "the seed does not match {host}'s commitment for period {}",
                msg.period
            ),
        ));
    }
    commit.seed = Some(seed);
    state.put_value(key, &commit)?;
    ctx.emit(
        Event::new("kiln.inference.v1.EventValidationSeedRevealed")
            .attr("host", host)
            .attr("period", msg.period),
    );
    Ok(())
}

/// At the settle that opens period `period`: each model's serving set is
/// kept as the period's duty weights.
pub fn keep_period_set<S: StateWrite>(
    state: &mut S,
    period: u64,
    model: &str,
    set: &ServingSet,
) -> TxResult<()> {
    // The duties read only the set itself, not the one it replaced.
    let kept = ServingSet {
        since_height: set.since_height,
        entries: set.entries.clone(),
        ..Default::default()
    };
    state.put_value(keys::period_serving(period, model), &kept)
}

/// At the settle that closes period `closing`: the model traffic that sets
/// next period's base rate is counted from its duty list.
pub fn count_traffic<S: StateWrite>(state: &mut S, closing: u64) -> TxResult<()> {
    let mut traffic: BTreeMap<String, u64> = state
        .prefix_values::<crate::Model>(keys::MODEL_PREFIX)?
        .into_iter()
        .map(|(_, m)| (m.id, 0))
        .collect();
    for (_, entry) in state.prefix_values::<DutyEntry>(&keys::duty_period(closing))? {
        let n = traffic.entry(entry.model).or_insert(0);
        *n = n.saturating_add(1);
    }
    for (model, n) in traffic {
        state.put_u64(keys::traffic(&model), n);
    }
    Ok(())
}

/// Recomputes period `period`'s duties from its revealed seeds, writes
/// every host's [`DutyRecord`], and drops the period's duty list, sets and
/// seeds. Returns one event per host.
pub fn recompute<S: StateWrite>(state: &mut S, period: u64) -> TxResult<Vec<Event>> {
    let entries = state.prefix_values::<DutyEntry>(&keys::duty_period(period))?;
    let sets: BTreeMap<String, ServingSet> = state
        .prefix_values::<ServingSet>(&keys::period_serving_of(period))?
        .into_iter()
        .filter_map(|(suffix, set)| String::from_utf8(suffix).ok().map(|m| (m, set)))
        .collect();
    let seeds: BTreeMap<Address, SeedCommit> = state
        .prefix_values::<SeedCommit>(&keys::seed_period(period))?
        .into_iter()
        .filter_map(|(suffix, c)| Address::from_bytes(&suffix).map(|a| (a, c)))
        .collect();
    let mut records: BTreeMap<Address, DutyRecord> = BTreeMap::new();
    for set in sets.values() {
        for e in &set.entries {
            records.entry(e.host).or_default().revealed =
                seeds.get(&e.host).is_some_and(|c| c.seed.is_some());
        }
    }
    for (suffix, entry) in &entries {
        let Ok(id) = <[u8; 32]>::try_from(suffix.as_slice()) else {
            continue;
        };
        let Some(set) = sets.get(&entry.model) else {
            continue;
        };
        for host_entry in &set.entries {
            let v = host_entry.host;
            let p = probability_in(set, &entry.executor, &v, entry.rate_micro);
            if p == 0 {
                continue;
            }
            let record = records.entry(v).or_default();
            let covering_seed = seeds
                .get(&v)
                .filter(|c| c.commit_height < entry.finish_height)
                .and_then(|c| c.seed);
            match covering_seed {
                Some(seed) => {
                    if is_assigned(&seed, &id, p) {
                        record.assigned_micro = record.assigned_micro.saturating_add(ONE);
                        if entry.validators.contains(&v) {
                            record.performed = record.performed.saturating_add(1);
                        } else {
                            record.skipped_micro = record.skipped_micro.saturating_add(ONE);
                        }
                    }
                }
                None => {
                    record.assigned_micro = record.assigned_micro.saturating_add(p);
                    record.skipped_micro = record.skipped_micro.saturating_add(p);
                }
            }
        }
    }
    let mut events = Vec::with_capacity(records.len());
    for (host, record) in &records {
        state.put_value(keys::duty_record(period, host), record)?;
        events.push(
            Event::new("kiln.inference.v1.EventValidationDuties")
                .attr("period", period)
                .attr("host", host)
                .attr("revealed", record.revealed)
                .attr("assigned_micro", record.assigned_micro)
                .attr("performed", record.performed)
                .attr("skipped_micro", record.skipped_micro),
        );
    }
    for prefix in [
        keys::duty_period(period),
        keys::period_serving_of(period),
        keys::seed_period(period),
    ] {
        for suffix in crate::handler::suffixes(state, &prefix)? {
            state.delete_raw([prefix.as_slice(), &suffix].concat());
        }
    }
    if let Some(old) = period.checked_sub(DUTY_RECORDS_KEPT) {
        let prefix = keys::duty_record_period(old);
        for suffix in crate::handler::suffixes(state, &prefix)? {
            state.delete_raw([prefix.as_slice(), &suffix].concat());
        }
    }
    Ok(events)
}

/// A host's duty record for `period`, once recomputed.
pub fn duty_record<S: StateRead + ?Sized>(
    state: &S,
    period: u64,
    host: &Address,
) -> TxResult<Option<DutyRecord>> {
    state.get_value(&keys::duty_record(period, host))
}

/// A host's seed for `period`, while the chain keeps it.
pub fn seed_commit<S: StateRead + ?Sized>(
    state: &S,
    period: u64,
    host: &Address,
) -> TxResult<Option<SeedCommit>> {
    state.get_value(&keys::seed(period, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_rate_follows_spec_points_and_falls_between_them() {
        assert_eq!(base_rate_micro(0), ONE);
        assert_eq!(base_rate_micro(100), ONE);
        assert_eq!(base_rate_micro(5_000), 50_000);
        assert_eq!(base_rate_micro(10_000), 10_000);
        assert_eq!(base_rate_micro(1_000_000), 10_000);
        let mut last = ONE;
        for t in (100..=10_100).step_by(50) {
            let r = base_rate_micro(t);
            assert!(r <= last, "the rate rises at {t}");
            last = r;
        }
        assert_eq!(base_rate_micro(7_500), 30_000);
    }

    #[test]
    fn reputation_lowers_the_rate_to_the_floor() {
        assert_eq!(expected_validations_micro(10_000, 0), ONE);
        assert_eq!(expected_validations_micro(10_000, 100), 10_000);
        assert_eq!(expected_validations_micro(10_000, 50), 505_000);
        assert_eq!(expected_validations_micro(ONE, 100), ONE);
        assert_eq!(expected_validations_micro(10_000, 250), 10_000);
    }

    #[test]
    fn the_probability_splits_the_rate_by_weight_and_caps_at_one() {
        assert_eq!(duty_probability_micro(ONE, 1, 4), 250_000);
        assert_eq!(duty_probability_micro(ONE, 4, 4), ONE);
        assert_eq!(duty_probability_micro(2 * ONE, 3, 4), ONE);
        assert_eq!(duty_probability_micro(ONE, 1, 0), 0);
    }

    #[test]
    fn assignment_happens_at_about_the_probability() {
        let seed = [7u8; 32];
        let mut hits = 0;
        for i in 0u32..20_000 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            if is_assigned(&seed, &id, 100_000) {
                hits += 1;
            }
        }
        // 10% of 20 000 = 2 000, σ ≈ 42.
        assert!((1_800..2_200).contains(&hits), "{hits}");
        assert!(is_assigned(&seed, &[0; 32], ONE));
        assert!(!is_assigned(&seed, &[0; 32], 0));
    }

    fn addr(n: u8) -> Address {
        Address::from_bytes(&[n; 20]).unwrap()
    }

    fn id(n: u32) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id
    }

    /// Period 5: hosts 1 (executor, weight 10), 2 (30), 3 (60); rate 1.
    /// Host 2 revealed and validated some of its duties, host 3 never
    /// revealed, host 1 revealed but committed only at height 150.
    #[test]
    fn recompute_counts_exact_duties_from_revealed_seeds_and_expected_ones_otherwise() {
        use crate::state::ServingEntry;
        use kiln_state::{EmptyState, Overlay};
        let mut state = Overlay::new(EmptyState);
        let entry = |host, weight| ServingEntry {
            host,
            weight,
            reliability_bps: 10_000,
            dead_since: None,
        };
        let set = ServingSet {
            since_height: 90,
            entries: vec![entry(addr(1), 10), entry(addr(2), 30), entry(addr(3), 60)],
            ..Default::default()
        };
        keep_period_set(&mut state, 5, "m", &set).unwrap();
        let seed2 = [2u8; 32];
        let seed1 = [1u8; 32];
        let commit = |h, seed| SeedCommit {
            commitment: [0; 32],
            commit_height: h,
            seed,
        };
        state
            .put_value(keys::seed(5, &addr(2)), &commit(80, Some(seed2)))
            .unwrap();
        state
            .put_value(keys::seed(5, &addr(3)), &commit(80, None))
            .unwrap();
        state
            .put_value(keys::seed(5, &addr(1)), &commit(150, Some(seed1)))
            .unwrap();
        // 100 inferences by host 1 at heights 100..200; 20 by host 3.
        let mut want2 = (0u64, 0u64); // (assigned, performed)
        for n in 0..120u32 {
            let executor = if n < 100 { addr(1) } else { addr(3) };
            let height = 100 + u64::from(n);
            let p2 = probability_in(&set, &executor, &addr(2), ONE);
            let assigned = is_assigned(&seed2, &id(n), p2);
            // Host 2 validates every other assigned inference.
            let validated = assigned && n % 2 == 0;
            if assigned {
                want2.0 += 1;
                want2.1 += u64::from(validated);
            }
            let entry = DutyEntry {
                executor,
                model: "m".into(),
                rate_micro: ONE,
                finish_height: height,
                validators: if validated { vec![addr(2)] } else { vec![] },
            };
            on_finish(&mut state, 5, &id(n), &entry).unwrap();
        }
        let events = recompute(&mut state, 5).unwrap();
        assert_eq!(events.len(), 3);
        let r2 = duty_record(&state, 5, &addr(2)).unwrap().unwrap();
        assert!(r2.revealed);
        assert!(want2.0 > 20, "host 2 should owe many duties: {want2:?}");
        assert_eq!(r2.assigned_micro, want2.0 * ONE);
        assert_eq!(r2.performed, want2.1);
        assert_eq!(r2.skipped_micro, (want2.0 - want2.1) * ONE);
        // Host 3 never revealed: charged p = 60/90 for each of host 1's
        // 100 inferences (it executed the other 20), all skipped.
        let r3 = duty_record(&state, 5, &addr(3)).unwrap().unwrap();
        assert!(!r3.revealed);
        assert_eq!(r3.assigned_micro, 100 * (ONE * 60 / 90));
        assert_eq!(r3.skipped_micro, r3.assigned_micro);
        // Host 1 owes duties only for host 3's 20 inferences (heights
        // 200..220, all after its commit at 150): exact, none validated.
        let r1 = duty_record(&state, 5, &addr(1)).unwrap().unwrap();
        let p1 = probability_in(&set, &addr(3), &addr(1), ONE);
        let want1 = (100..120u32)
            .filter(|n| is_assigned(&seed1, &id(*n), p1))
            .count() as u64;
        assert_eq!(r1.assigned_micro, want1 * ONE);
        assert_eq!(r1.skipped_micro, want1 * ONE);
        // The period's working state is gone; the records stay.
        assert!(state
            .prefix_values::<DutyEntry>(&keys::duty_period(5))
            .unwrap()
            .is_empty());
        assert!(seed_commit(&state, 5, &addr(2)).unwrap().is_none());
        assert!(state
            .get_value::<ServingSet>(&keys::period_serving(5, "m"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_commit_after_an_inference_leaves_it_to_the_expected_charge() {
        use crate::state::ServingEntry;
        use kiln_state::{EmptyState, Overlay};
        let mut state = Overlay::new(EmptyState);
        let set = ServingSet {
            since_height: 0,
            entries: [(1u8, 50u64), (2, 50)]
                .iter()
                .map(|(a, w)| ServingEntry {
                    host: addr(*a),
                    weight: *w,
                    reliability_bps: 10_000,
                    dead_since: None,
                })
                .collect(),
            ..Default::default()
        };
        keep_period_set(&mut state, 0, "m", &set).unwrap();
        // Host 2 committed at height 10 and revealed; the inference finished
        // at height 10 (not after the commit): p = 1 for host 2, charged.
        state
            .put_value(
                keys::seed(0, &addr(2)),
                &SeedCommit {
                    commitment: [0; 32],
                    commit_height: 10,
                    seed: Some([0; 32]),
                },
            )
            .unwrap();
        let entry = DutyEntry {
            executor: addr(1),
            model: "m".into(),
            rate_micro: ONE,
            finish_height: 10,
            validators: vec![addr(2)],
        };
        on_finish(&mut state, 0, &id(1), &entry).unwrap();
        recompute(&mut state, 0).unwrap();
        let r2 = duty_record(&state, 0, &addr(2)).unwrap().unwrap();
        assert_eq!(
            (r2.assigned_micro, r2.skipped_micro, r2.performed),
            (ONE, ONE, 0)
        );
    }

    #[test]
    fn the_commitment_binds_chain_period_host_and_seed() {
        let host = Address::from_bytes(&[1; 20]).unwrap();
        let other = Address::from_bytes(&[2; 20]).unwrap();
        let c = seed_commitment("kiln-1", 3, &host, &[9; 32]);
        assert_ne!(c, seed_commitment("kiln-2", 3, &host, &[9; 32]));
        assert_ne!(c, seed_commitment("kiln-1", 4, &host, &[9; 32]));
        assert_ne!(c, seed_commitment("kiln-1", 3, &other, &[9; 32]));
        assert_ne!(c, seed_commitment("kiln-1", 3, &host, &[8; 32]));
    }
}
