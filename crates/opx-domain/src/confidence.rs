//! Confidence: a pure, versioned, integer-only score of an evidence bundle.
//!
//! [`assess`] turns a [`ConfidenceModel`] and an [`EvidenceBundle`] into a
//! [`ConfidenceAssessment`]: five factors, each valued in basis points (`0..=10_000`), a
//! weighted sum, a [`Band`], and a per-factor breakdown that is stored with the decision so
//! anyone can see why. There are no floats anywhere: every division is integer division,
//! which rounds down.
//!
//! # The five factors (model v1 weights)
//!
//! | factor | weight | value |
//! |---|---|---|
//! | `distinct_alarms` | 4500 | distinct `alarm` identities among members: 0 or 1 → 0, 2 → 7500, 3 → 9000, 4 or more → 10000 |
//! | `max_severity` | 2500 | worst member severity: SEV1 → 10000, SEV2 → 8000, SEV3 → 4000, SEV4 → 1000 (no members → 0) |
//! | `severity_agreement` | 1000 | distinct alarms whose worst detection is SEV2 or worse, × 10000 / distinct alarms (no alarms → 0) |
//! | `rule_diversity` | 1000 | distinct rule ids: 0 → 0, 1 → 5000, 2 or more → 10000 |
//! | `burst_volume` | 1000 | member detections: 0 → 0, 1 → 2000, 2 → 5000, 3–4 → 7000, 5 or more → 10000 |
//!
//! `score_bps = (Σ weight_bps × value_bps) / 10_000`: the products are summed first and
//! divided once, so the only rounding is one final round-down. Each factor's
//! `contribution_bps = weight_bps × value_bps / 10_000` is shown for people and is rounded
//! down on its own, so the contributions may add up to up to 4 bps less than the score.
//!
//! Bands: LOW below 3000 ≤ MEDIUM below 6000 ≤ HIGH below 8500 ≤ CRITICAL. The promote
//! threshold is 6000.
//!
//! # Why one alarm alone can never promote
//!
//! With one alarm, `distinct_alarms` is 0 whatever happens — any number of detections of
//! it, any severities, flapping ALARM/OK/ALARM (recoveries are never detections; each
//! re-fire is one more detection of the same alarm). Every other factor is at most 10000,
//! so the best one alarm can score is `(2500 + 1000 + 1000 + 1000) × 10000 / 10000 = 5500`,
//! below 6000. [`ConfidenceModel::validate`] refuses any model where this ceiling reaches
//! the threshold: paging on a single alarm is what a rule's `promotes_alone` is for.
//!
//! # Why two SEV2 alarms always promote
//!
//! Two distinct alarms, each with a detection at SEV2 or worse: `distinct_alarms` ≥ 7500,
//! `max_severity` ≥ 8000, at least one rule (≥ 5000) and at least two detections (≥ 5000).
//! With exactly two alarms agreement is 10000: `(4500×7500 + 2500×8000 + 1000×10000 +
//! 1000×5000 + 1000×5000) / 10000 = 7375`. With three, agreement ≥ 2/3 and distinct is 9000:
//! ≥ 7916. With four or more, distinct is 10000 and the burst ≥ 7000: ≥ 4500 + 2000 + 500 +
//! 700 = 7700 even if agreement drops towards 0. All ≥ 6000.
//!
//! The same arithmetic shows v1 is monotone: adding detections to a bundle never turns a
//! score at or above the threshold into one below it (the only factor that can fall,
//! agreement, is outweighed by the distinct-alarm step it comes with, and a bundle with
//! four alarms and five detections scores at least 6250). So the arrival order of a storm
//! cannot decide whether it promotes.

use crate::correlation::EvidenceBundle;
use crate::detection::Detection;
use crate::hash::{Digest, FieldHasher};
use crate::signal::Severity;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The whole scale: 100% in basis points.
pub const BPS_MAX: u32 = 10_000;
/// The version of [`ConfidenceModel::v1`].
pub const MODEL_V1_VERSION: &str = "1.0.0";

/// One of the five factors. Serialised in snake_case (`distinct_alarms`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    /// How many different alarms fired: the strongest sign of a real outage.
    DistinctAlarms,
    /// The worst severity among the members.
    MaxSeverity,
    /// The share of alarms that fired at SEV2 or worse.
    SeverityAgreement,
    /// How many different rules matched.
    RuleDiversity,
    /// How many detections the bundle holds.
    BurstVolume,
}

impl Factor {
    /// Every factor, in breakdown order.
    pub const ALL: [Factor; 5] = [
        Factor::DistinctAlarms,
        Factor::MaxSeverity,
        Factor::SeverityAgreement,
        Factor::RuleDiversity,
        Factor::BurstVolume,
    ];

    /// The canonical text, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::DistinctAlarms => "distinct_alarms",
            Factor::MaxSeverity => "max_severity",
            Factor::SeverityAgreement => "severity_agreement",
            Factor::RuleDiversity => "rule_diversity",
            Factor::BurstVolume => "burst_volume",
        }
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The weight of each factor, in basis points; they must sum to exactly [`BPS_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorWeights {
    /// Weight of [`Factor::DistinctAlarms`].
    pub distinct_alarms: u32,
    /// Weight of [`Factor::MaxSeverity`].
    pub max_severity: u32,
    /// Weight of [`Factor::SeverityAgreement`].
    pub severity_agreement: u32,
    /// Weight of [`Factor::RuleDiversity`].
    pub rule_diversity: u32,
    /// Weight of [`Factor::BurstVolume`].
    pub burst_volume: u32,
}

impl FactorWeights {
    /// The weight of `factor`.
    pub fn get(&self, factor: Factor) -> u32 {
        match factor {
            Factor::DistinctAlarms => self.distinct_alarms,
            Factor::MaxSeverity => self.max_severity,
            Factor::SeverityAgreement => self.severity_agreement,
            Factor::RuleDiversity => self.rule_diversity,
            Factor::BurstVolume => self.burst_volume,
        }
    }

    /// The sum of the weights, in a type wide enough that it cannot overflow.
    pub fn sum(&self) -> u64 {
        Factor::ALL
            .iter()
            .map(|&factor| u64::from(self.get(factor)))
            .sum()
    }
}

/// Where the bands begin, in basis points: LOW is below `medium_from_bps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandThresholds {
    /// The lowest MEDIUM score.
    pub medium_from_bps: u32,
    /// The lowest HIGH score.
    pub high_from_bps: u32,
    /// The lowest CRITICAL score.
    pub critical_from_bps: u32,
}

/// How confident the score is, for people. Serialised as `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Band {
    /// Below `medium_from_bps`.
    Low,
    /// From `medium_from_bps`, below `high_from_bps`.
    Medium,
    /// From `high_from_bps`, below `critical_from_bps`.
    High,
    /// From `critical_from_bps`.
    Critical,
}

impl Band {
    /// The canonical text, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Low => "LOW",
            Band::Medium => "MEDIUM",
            Band::High => "HIGH",
            Band::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a confidence model was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// `version` is not semantic version text.
    #[error("confidence model version {version:?} is not a semantic version ({reason}); write it as MAJOR.MINOR.PATCH, e.g. 1.0.0")]
    Version {
        /// The text given.
        version: String,
        /// The parser's reason.
        reason: String,
    },
    /// The weights do not sum to exactly [`BPS_MAX`].
    #[error("weights_bps must sum to exactly 10000 basis points, got {sum}; adjust the weights so they add up to 10000")]
    WeightsSum {
        /// The actual sum.
        sum: u64,
    },
    /// The promote threshold is outside `1..=10000`.
    #[error("promote_threshold_bps must be between 1 and 10000, got {0}; v1 uses 6000")]
    PromoteThreshold(u32),
    /// The band thresholds are not strictly increasing inside `1..=10000`.
    #[error("bands must satisfy 0 < medium_from_bps < high_from_bps < critical_from_bps <= 10000, got {medium_from_bps}, {high_from_bps}, {critical_from_bps}; v1 uses 3000, 6000, 8500")]
    BandsOrder {
        /// As given.
        medium_from_bps: u32,
        /// As given.
        high_from_bps: u32,
        /// As given.
        critical_from_bps: u32,
    },
    /// One alarm alone could reach the promote threshold.
    #[error("with these weights one alarm alone can score {reachable_bps} bps, at or above promote_threshold_bps {promote_threshold_bps}; one alarm must never promote on confidence (a rule with promotes_alone pages on one alarm): raise the distinct_alarms weight or the threshold")]
    SingleAlarmCanPromote {
        /// The best score one alarm can reach.
        reachable_bps: u32,
        /// The model's threshold.
        promote_threshold_bps: u32,
    },
}

/// A versioned confidence model: factor weights, the promote threshold and the bands.
///
/// Always valid: it can only be built by [`ConfidenceModel::v1`], [`ConfidenceModel::new`]
/// or deserialisation, and all of them run [`ConfidenceModel::validate`]. A model file
/// looks like:
///
/// ```
/// # use opx_domain::confidence::ConfidenceModel;
/// let text = r#"{
///   "version": "1.0.0",
///   "weights_bps": {"distinct_alarms": 4500, "max_severity": 2500,
///     "severity_agreement": 1000, "rule_diversity": 1000, "burst_volume": 1000},
///   "promote_threshold_bps": 6000,
///   "bands": {"medium_from_bps": 3000, "high_from_bps": 6000, "critical_from_bps": 8500}
/// }"#;
/// let model: ConfidenceModel = serde_json::from_str(text).unwrap();
/// assert_eq!(model, ConfidenceModel::v1());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedModel")]
pub struct ConfidenceModel {
    version: String,
    weights_bps: FactorWeights,
    promote_threshold_bps: u32,
    bands: BandThresholds,
}

/// The serialised form, validated into a [`ConfidenceModel`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedModel {
    version: String,
    weights_bps: FactorWeights,
    promote_threshold_bps: u32,
    bands: BandThresholds,
}

impl TryFrom<UncheckedModel> for ConfidenceModel {
    type Error = ModelError;
    fn try_from(unchecked: UncheckedModel) -> Result<ConfidenceModel, ModelError> {
        ConfidenceModel::new(
            &unchecked.version,
            unchecked.weights_bps,
            unchecked.promote_threshold_bps,
            unchecked.bands,
        )
    }
}

impl Default for ConfidenceModel {
    fn default() -> ConfidenceModel {
        ConfidenceModel::v1()
    }
}

impl ConfidenceModel {
    /// Model v1, the default; see the module documentation.
    pub fn v1() -> ConfidenceModel {
        ConfidenceModel {
            version: MODEL_V1_VERSION.to_owned(),
            weights_bps: FactorWeights {
                distinct_alarms: 4500,
                max_severity: 2500,
                severity_agreement: 1000,
                rule_diversity: 1000,
                burst_volume: 1000,
            },
            promote_threshold_bps: 6000,
            bands: BandThresholds {
                medium_from_bps: 3000,
                high_from_bps: 6000,
                critical_from_bps: 8500,
            },
        }
    }

    /// Builds and validates a model.
    pub fn new(
        version: &str,
        weights_bps: FactorWeights,
        promote_threshold_bps: u32,
        bands: BandThresholds,
    ) -> Result<ConfidenceModel, ModelError> {
        let model = ConfidenceModel {
            version: version.to_owned(),
            weights_bps,
            promote_threshold_bps,
            bands,
        };
        model.validate()?;
        Ok(model)
    }

    /// Checks, in this order: the version is semantic version text; the weights sum to
    /// exactly 10000; the threshold is in `1..=10000`; the bands are strictly increasing
    /// inside `1..=10000`; one alarm alone cannot reach the threshold.
    pub fn validate(&self) -> Result<(), ModelError> {
        if let Err(error) = semver::Version::parse(&self.version) {
            return Err(ModelError::Version {
                version: self.version.clone(),
                reason: error.to_string(),
            });
        }
        let sum = self.weights_bps.sum();
        if sum != u64::from(BPS_MAX) {
            return Err(ModelError::WeightsSum { sum });
        }
        if !(1..=BPS_MAX).contains(&self.promote_threshold_bps) {
            return Err(ModelError::PromoteThreshold(self.promote_threshold_bps));
        }
        let BandThresholds {
            medium_from_bps,
            high_from_bps,
            critical_from_bps,
        } = self.bands;
        if !(0 < medium_from_bps
            && medium_from_bps < high_from_bps
            && high_from_bps < critical_from_bps
            && critical_from_bps <= BPS_MAX)
        {
            return Err(ModelError::BandsOrder {
                medium_from_bps,
                high_from_bps,
                critical_from_bps,
            });
        }
        let reachable_bps = self.single_alarm_score_max_bps();
        if reachable_bps >= self.promote_threshold_bps {
            return Err(ModelError::SingleAlarmCanPromote {
                reachable_bps,
                promote_threshold_bps: self.promote_threshold_bps,
            });
        }
        Ok(())
    }

    /// The best score a bundle of one alarm can reach: every factor at 10000 except
    /// `distinct_alarms`, which is 0 for one alarm.
    pub fn single_alarm_score_max_bps(&self) -> u32 {
        let products: u64 = Factor::ALL
            .iter()
            .map(|&factor| {
                let value = if factor == Factor::DistinctAlarms {
                    0
                } else {
                    BPS_MAX
                };
                u64::from(self.weights_bps.get(factor)) * u64::from(value)
            })
            .sum();
        clamp_bps(products / u64::from(BPS_MAX))
    }

    /// The model's semantic version text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The factor weights.
    pub fn weights_bps(&self) -> FactorWeights {
        self.weights_bps
    }

    /// The lowest score that promotes.
    pub fn promote_threshold_bps(&self) -> u32 {
        self.promote_threshold_bps
    }

    /// The band thresholds.
    pub fn bands(&self) -> BandThresholds {
        self.bands
    }

    /// The band of a score.
    pub fn band_of(&self, score_bps: u32) -> Band {
        if score_bps >= self.bands.critical_from_bps {
            Band::Critical
        } else if score_bps >= self.bands.high_from_bps {
            Band::High
        } else if score_bps >= self.bands.medium_from_bps {
            Band::Medium
        } else {
            Band::Low
        }
    }

    /// `FieldHasher("opx.confidence-model.v1")` over every field, factors by name.
    pub fn hash(&self) -> Digest {
        let mut hasher = FieldHasher::new("opx.confidence-model.v1").str(&self.version);
        for factor in Factor::ALL {
            hasher = hasher
                .str(factor.as_str())
                .u64(u64::from(self.weights_bps.get(factor)));
        }
        hasher
            .u64(u64::from(self.promote_threshold_bps))
            .u64(u64::from(self.bands.medium_from_bps))
            .u64(u64::from(self.bands.high_from_bps))
            .u64(u64::from(self.bands.critical_from_bps))
            .finish()
    }
}

/// One factor's line of the breakdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorScore {
    /// Which factor.
    pub factor: Factor,
    /// Its value, `0..=10000`.
    pub value_bps: u32,
    /// Its weight in the model.
    pub weight_bps: u32,
    /// `weight_bps × value_bps / 10000`, rounded down.
    pub contribution_bps: u32,
    /// What was counted and how it mapped to the value, for people. Generated from the
    /// bundle only, so it is as deterministic as the numbers.
    pub explanation: String,
}

/// The score of one bundle under one model, with its breakdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfidenceAssessment {
    /// The model's version.
    pub model_version: String,
    /// [`ConfidenceModel::hash`].
    pub model_hash: Digest,
    /// The assessed bundle's content hash.
    pub bundle_hash: Digest,
    /// `Σ weight × value / 10000`, rounded down once.
    pub score_bps: u32,
    /// The band of the score.
    pub band: Band,
    /// The model's promote threshold, recorded so the gate and a reader see the bar the
    /// score was held to without looking the model up.
    pub promote_threshold_bps: u32,
    /// One line per factor, in [`Factor::ALL`] order.
    pub factors: Vec<FactorScore>,
}

impl ConfidenceAssessment {
    /// `FieldHasher("opx.confidence-assessment.v1")` over every field in declaration order,
    /// the factor list prefixed by its length.
    pub fn hash(&self) -> Digest {
        let mut hasher = FieldHasher::new("opx.confidence-assessment.v1")
            .str(&self.model_version)
            .digest(&self.model_hash)
            .digest(&self.bundle_hash)
            .u64(u64::from(self.score_bps))
            .str(self.band.as_str())
            .u64(u64::from(self.promote_threshold_bps))
            .u64(self.factors.len() as u64);
        for line in &self.factors {
            hasher = hasher
                .str(line.factor.as_str())
                .u64(u64::from(line.value_bps))
                .u64(u64::from(line.weight_bps))
                .u64(u64::from(line.contribution_bps))
                .str(&line.explanation);
        }
        hasher.finish()
    }

    /// Whether the score reaches the recorded threshold.
    pub fn reaches_threshold(&self) -> bool {
        self.score_bps >= self.promote_threshold_bps
    }
}

/// Scores `bundle` with `model`; see the module documentation for the arithmetic.
pub fn assess(model: &ConfidenceModel, bundle: &EvidenceBundle) -> ConfidenceAssessment {
    let values = factor_values(&bundle.members);
    let mut products_sum: u64 = 0;
    let mut factors = Vec::with_capacity(Factor::ALL.len());
    for (factor, (value_bps, explanation)) in Factor::ALL.into_iter().zip(values) {
        let weight_bps = model.weights_bps.get(factor);
        let product = u64::from(weight_bps) * u64::from(value_bps);
        products_sum += product;
        factors.push(FactorScore {
            factor,
            value_bps,
            weight_bps,
            contribution_bps: clamp_bps(product / u64::from(BPS_MAX)),
            explanation,
        });
    }
    let score_bps = clamp_bps(products_sum / u64::from(BPS_MAX));
    ConfidenceAssessment {
        model_version: model.version.clone(),
        model_hash: model.hash(),
        bundle_hash: bundle.content_hash,
        score_bps,
        band: model.band_of(score_bps),
        promote_threshold_bps: model.promote_threshold_bps,
        factors,
    }
}

/// Weights sum to 10000 and values are at most 10000, so a quotient by 10000 is at most
/// 10000; clamping only keeps the conversion total.
fn clamp_bps(value: u64) -> u32 {
    u32::try_from(value.min(u64::from(BPS_MAX))).unwrap_or(BPS_MAX)
}

/// Each factor's value and explanation, in [`Factor::ALL`] order.
fn factor_values(members: &[Detection]) -> [(u32, String); 5] {
    let mut worst_by_alarm: BTreeMap<&str, Severity> = BTreeMap::new();
    let mut rules: BTreeSet<&str> = BTreeSet::new();
    for member in members {
        worst_by_alarm
            .entry(member.alarm.as_str())
            .and_modify(|worst| *worst = (*worst).min(member.severity))
            .or_insert(member.severity);
        rules.insert(member.rule_id.as_str());
    }
    let distinct_alarms = worst_by_alarm.len();
    let worst = worst_by_alarm.values().min().copied();
    let alarms_at_sev2_or_worse = worst_by_alarm
        .values()
        .filter(|severity| severity.at_least(Severity::Sev2))
        .count();
    [
        distinct_alarms_value(distinct_alarms),
        max_severity_value(worst),
        severity_agreement_value(alarms_at_sev2_or_worse, distinct_alarms),
        rule_diversity_value(rules.len()),
        burst_volume_value(members.len()),
    ]
}

fn distinct_alarms_value(distinct_alarms: usize) -> (u32, String) {
    let value = match distinct_alarms {
        0 | 1 => 0,
        2 => 7500,
        3 => 9000,
        _ => BPS_MAX,
    };
    (value, format!("{distinct_alarms} distinct alarm(s) -> {value} bps (0-1 -> 0, 2 -> 7500, 3 -> 9000, 4+ -> 10000)"))
}

fn max_severity_value(worst: Option<Severity>) -> (u32, String) {
    match worst {
        None => (0, "no detections -> 0 bps".to_owned()),
        Some(severity) => {
            let value = match severity {
                Severity::Sev1 => BPS_MAX,
                Severity::Sev2 => 8000,
                Severity::Sev3 => 4000,
                Severity::Sev4 => 1000,
            };
            (value, format!("worst severity {severity} -> {value} bps (SEV1 10000, SEV2 8000, SEV3 4000, SEV4 1000)"))
        }
    }
}

fn severity_agreement_value(at_sev2_or_worse: usize, distinct_alarms: usize) -> (u32, String) {
    if distinct_alarms == 0 {
        return (0, "no alarms -> 0 bps".to_owned());
    }
    // at_sev2_or_worse <= distinct_alarms, so the quotient is at most 10000.
    let value = clamp_bps(at_sev2_or_worse as u64 * u64::from(BPS_MAX) / distinct_alarms as u64);
    (
        value,
        format!(
            "{at_sev2_or_worse} of {distinct_alarms} distinct alarm(s) at SEV2 or worse -> \
             {at_sev2_or_worse} x 10000 / {distinct_alarms} = {value} bps (rounded down)"
        ),
    )
}

fn rule_diversity_value(distinct_rules: usize) -> (u32, String) {
    let value = match distinct_rules {
        0 => 0,
        1 => 5000,
        _ => BPS_MAX,
    };
    (
        value,
        format!("{distinct_rules} distinct rule(s) -> {value} bps (1 -> 5000, 2+ -> 10000)"),
    )
}

fn burst_volume_value(detections: usize) -> (u32, String) {
    let value = match detections {
        0 => 0,
        1 => 2000,
        2 => 5000,
        3 | 4 => 7000,
        _ => BPS_MAX,
    };
    (value, format!("{detections} detection(s) -> {value} bps (1 -> 2000, 2 -> 5000, 3-4 -> 7000, 5+ -> 10000)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlation::fixtures::{detection, detection_full, orders_key, T0};
    use crate::correlation::{WindowMs, BUNDLE_MEMBERS_MAX};
    use crate::signal::Severity::{Sev1, Sev2, Sev3, Sev4};
    use proptest::prelude::*;

    fn bundle_of(members: Vec<Detection>) -> EvidenceBundle {
        EvidenceBundle::for_window(
            orders_key(),
            crate::time::EpochMs(T0),
            WindowMs::DEFAULT,
            members,
        )
    }

    /// `(alarm, severity)` pairs, one detection each, one second apart, one rule.
    fn members(spec: &[(&str, Severity)]) -> Vec<Detection> {
        spec.iter()
            .enumerate()
            .map(|(i, &(alarm, severity))| detection(alarm, severity, T0 + 1000 * i as i64))
            .collect()
    }

    fn value(factor: Factor, members: &[Detection]) -> u32 {
        let index = Factor::ALL
            .iter()
            .position(|&f| f == factor)
            .expect("listed");
        factor_values(members)[index].0
    }

    #[test]
    fn distinct_alarms_table() {
        let cases: [(&[(&str, Severity)], u32); 6] = [
            (&[], 0),
            (&[("a", Sev1)], 0),
            (&[("a", Sev1), ("a", Sev1), ("a", Sev2)], 0),
            (&[("a", Sev4), ("b", Sev4)], 7500),
            (&[("a", Sev4), ("b", Sev4), ("c", Sev4), ("a", Sev1)], 9000),
            (
                &[
                    ("a", Sev4),
                    ("b", Sev4),
                    ("c", Sev4),
                    ("d", Sev4),
                    ("e", Sev4),
                ],
                10_000,
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(
                value(Factor::DistinctAlarms, &members(spec)),
                expected,
                "{spec:?}"
            );
        }
    }

    #[test]
    fn max_severity_table() {
        let cases: [(&[(&str, Severity)], u32); 6] = [
            (&[], 0),
            (&[("a", Sev4)], 1000),
            (&[("a", Sev3), ("b", Sev4)], 4000),
            (&[("a", Sev4), ("b", Sev2)], 8000),
            (&[("a", Sev3), ("a", Sev1)], 10_000),
            (&[("a", Sev1), ("b", Sev1)], 10_000),
        ];
        for (spec, expected) in cases {
            assert_eq!(
                value(Factor::MaxSeverity, &members(spec)),
                expected,
                "{spec:?}"
            );
        }
    }

    #[test]
    fn severity_agreement_table() {
        let cases: [(&[(&str, Severity)], u32); 7] = [
            (&[], 0),
            (&[("a", Sev3)], 0),
            (&[("a", Sev2)], 10_000),
            (&[("a", Sev3), ("a", Sev2)], 10_000),
            (&[("a", Sev1), ("b", Sev3)], 5000),
            (&[("a", Sev1), ("b", Sev3), ("c", Sev4)], 3333),
            (&[("a", Sev2), ("b", Sev1), ("c", Sev4)], 6666),
        ];
        for (spec, expected) in cases {
            assert_eq!(
                value(Factor::SeverityAgreement, &members(spec)),
                expected,
                "{spec:?}"
            );
        }
    }

    #[test]
    fn rule_diversity_table() {
        let by_rule = |rules: &[&str]| -> Vec<Detection> {
            rules
                .iter()
                .enumerate()
                .map(|(i, rule)| detection_full("orders", "a", Sev2, T0 + i as i64, rule, false))
                .collect()
        };
        let cases: [(&[&str], u32); 4] = [
            (&[], 0),
            (&["cloudwatch-alarm", "cloudwatch-alarm"], 5000),
            (&["cloudwatch-alarm", "canary"], 10_000),
            (&["a", "b", "c"], 10_000),
        ];
        for (rules, expected) in cases {
            assert_eq!(
                value(Factor::RuleDiversity, &by_rule(rules)),
                expected,
                "{rules:?}"
            );
        }
    }

    #[test]
    fn burst_volume_table() {
        let cases: [(usize, u32); 8] = [
            (0, 0),
            (1, 2000),
            (2, 5000),
            (3, 7000),
            (4, 7000),
            (5, 10_000),
            (6, 10_000),
            (500, 10_000),
        ];
        for (count, expected) in cases {
            let members: Vec<Detection> = (0..count)
                .map(|i| detection("a", Sev3, T0 + i as i64))
                .collect();
            assert_eq!(value(Factor::BurstVolume, &members), expected, "{count}");
        }
    }

    #[test]
    fn bands_table() {
        let model = ConfidenceModel::v1();
        let cases = [
            (0, Band::Low),
            (2999, Band::Low),
            (3000, Band::Medium),
            (5999, Band::Medium),
            (6000, Band::High),
            (8499, Band::High),
            (8500, Band::Critical),
            (10_000, Band::Critical),
        ];
        for (score, band) in cases {
            assert_eq!(model.band_of(score), band, "{score}");
        }
    }

    #[test]
    fn two_sev2_alarms_score_7375_with_a_breakdown() {
        // given two distinct SEV2 alarms, one detection each, one rule
        let bundle = bundle_of(members(&[("api-5xx", Sev2), ("api-latency", Sev2)]));

        // when
        let assessment = assess(&ConfidenceModel::v1(), &bundle);

        // then
        let lines: Vec<(Factor, u32, u32, u32)> = assessment
            .factors
            .iter()
            .map(|line| {
                (
                    line.factor,
                    line.value_bps,
                    line.weight_bps,
                    line.contribution_bps,
                )
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                (Factor::DistinctAlarms, 7500, 4500, 3375),
                (Factor::MaxSeverity, 8000, 2500, 2000),
                (Factor::SeverityAgreement, 10_000, 1000, 1000),
                (Factor::RuleDiversity, 5000, 1000, 500),
                (Factor::BurstVolume, 5000, 1000, 500),
            ]
        );
        assert_eq!(assessment.score_bps, 7375);
        assert_eq!(assessment.band, Band::High);
        assert!(assessment.reaches_threshold());
        assert_eq!(assessment.model_version, "1.0.0");
        assert_eq!(assessment.model_hash, ConfidenceModel::v1().hash());
        assert_eq!(assessment.bundle_hash, bundle.content_hash);
        assert!(assessment.factors[2]
            .explanation
            .contains("2 of 2 distinct alarm(s)"));
    }

    #[test]
    fn score_rounds_down_once_after_summing() {
        // agreement 1/3 -> 3333 bps; 1000 x 3333 / 10000 = 333.3 -> contribution 333
        let bundle = bundle_of(members(&[("a", Sev1), ("b", Sev3), ("c", Sev4)]));
        let assessment = assess(&ConfidenceModel::v1(), &bundle);
        // (4500*9000 + 2500*10000 + 1000*3333 + 1000*5000 + 1000*7000) / 10000 = 8083.3
        assert_eq!(assessment.score_bps, 8083);
        let contributions: u32 = assessment
            .factors
            .iter()
            .map(|line| line.contribution_bps)
            .sum();
        assert!(assessment.score_bps - contributions <= 4);
    }

    #[test]
    fn one_alarm_at_its_loudest_scores_5500() {
        let mut loud: Vec<Detection> = (0..20)
            .map(|i| {
                detection_full(
                    "orders",
                    "api-5xx",
                    Sev1,
                    T0 + i,
                    if i % 2 == 0 { "r1" } else { "r2" },
                    false,
                )
            })
            .collect();
        loud.push(detection("api-5xx", Sev1, T0 + 100));
        let assessment = assess(&ConfidenceModel::v1(), &bundle_of(loud));
        assert_eq!(assessment.score_bps, 5500);
        assert_eq!(ConfidenceModel::v1().single_alarm_score_max_bps(), 5500);
        assert!(!assessment.reaches_threshold());
    }

    #[test]
    fn v1_is_valid_and_its_hash_covers_every_field() {
        let v1 = ConfidenceModel::v1();
        assert_eq!(v1.validate(), Ok(()));
        assert_eq!(ConfidenceModel::default(), v1);
        let weights = v1.weights_bps();
        let bands = v1.bands();
        let variants = [
            ConfidenceModel::new("1.0.1", weights, 6000, bands),
            ConfidenceModel::new("1.0.0", weights, 6001, bands),
            ConfidenceModel::new(
                "1.0.0",
                FactorWeights {
                    distinct_alarms: 5000,
                    max_severity: 2000,
                    ..weights
                },
                6000,
                bands,
            ),
            ConfidenceModel::new(
                "1.0.0",
                weights,
                6000,
                BandThresholds {
                    medium_from_bps: 2999,
                    ..bands
                },
            ),
        ];
        for variant in variants {
            let variant = variant.expect("valid");
            assert_ne!(variant.hash(), v1.hash(), "{variant:?}");
        }
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let v1 = ConfidenceModel::v1();
        let weights = v1.weights_bps();
        let bands = v1.bands();
        let cases: Vec<(&str, Result<ConfidenceModel, ModelError>, &str)> = vec![
            (
                "not semver",
                ConfidenceModel::new("v1", weights, 6000, bands),
                "not a semantic version",
            ),
            (
                "lexical version",
                ConfidenceModel::new("1.0", weights, 6000, bands),
                "not a semantic version",
            ),
            (
                "weights sum below",
                ConfidenceModel::new(
                    "1.0.0",
                    FactorWeights {
                        burst_volume: 999,
                        ..weights
                    },
                    6000,
                    bands,
                ),
                "got 9999",
            ),
            (
                "weights overflow u32 if summed carelessly",
                ConfidenceModel::new(
                    "1.0.0",
                    FactorWeights {
                        burst_volume: u32::MAX,
                        ..weights
                    },
                    6000,
                    bands,
                ),
                "must sum to exactly 10000",
            ),
            (
                "zero threshold",
                ConfidenceModel::new("1.0.0", weights, 0, bands),
                "promote_threshold_bps",
            ),
            (
                "threshold above scale",
                ConfidenceModel::new("1.0.0", weights, 10_001, bands),
                "promote_threshold_bps",
            ),
            (
                "bands unordered",
                ConfidenceModel::new(
                    "1.0.0",
                    weights,
                    6000,
                    BandThresholds {
                        high_from_bps: 3000,
                        ..bands
                    },
                ),
                "bands must satisfy",
            ),
            (
                "critical above scale",
                ConfidenceModel::new(
                    "1.0.0",
                    weights,
                    6000,
                    BandThresholds {
                        critical_from_bps: 10_001,
                        ..bands
                    },
                ),
                "bands must satisfy",
            ),
            (
                "one alarm could promote",
                ConfidenceModel::new("1.0.0", weights, 5500, bands),
                "one alarm alone can score 5500",
            ),
        ];
        for (name, result, expected) in cases {
            let message = result.expect_err(name).to_string();
            assert!(message.contains(expected), "{name}: {message}");
        }
    }

    #[test]
    fn model_reads_from_a_file_and_refuses_invalid_or_unknown_fields() {
        let v1 = ConfidenceModel::v1();
        let text = serde_json::to_string(&v1).expect("serialises");
        assert_eq!(
            serde_json::from_str::<ConfidenceModel>(&text).expect("parses"),
            v1
        );
        let invalid = text.replace(
            "\"promote_threshold_bps\":6000",
            "\"promote_threshold_bps\":5000",
        );
        let error =
            serde_json::from_str::<ConfidenceModel>(&invalid).expect_err("one alarm could promote");
        assert!(error.to_string().contains("one alarm alone"), "{error}");
        let unknown = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(serde_json::from_str::<ConfidenceModel>(&unknown).is_err());
        let yaml = "version: 1.0.0\nweights_bps:\n  distinct_alarms: 4500\n  max_severity: 2500\n  severity_agreement: 1000\n  rule_diversity: 1000\n  burst_volume: 1000\npromote_threshold_bps: 6000\nbands:\n  medium_from_bps: 3000\n  high_from_bps: 6000\n  critical_from_bps: 8500\n";
        assert_eq!(
            serde_saphyr::from_str::<ConfidenceModel>(yaml).expect("yaml parses"),
            v1
        );
    }

    #[test]
    fn assessment_hash_covers_every_field_and_serde_round_trips() {
        let bundle = bundle_of(members(&[("a", Sev2), ("b", Sev3)]));
        let assessment = assess(&ConfidenceModel::v1(), &bundle);
        let text = serde_json::to_string(&assessment).expect("serialises");
        assert!(
            text.contains("\"band\":\"HIGH\"") && text.contains("\"factor\":\"distinct_alarms\""),
            "{text}"
        );
        let back: ConfidenceAssessment = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.hash(), assessment.hash());
        type Mutation = fn(&mut ConfidenceAssessment);
        let mutations: [Mutation; 12] = [
            |a| a.model_version.push('x'),
            |a| a.model_hash = Digest::ZERO,
            |a| a.bundle_hash = Digest::ZERO,
            |a| a.score_bps += 1,
            |a| a.band = Band::Low,
            |a| a.promote_threshold_bps += 1,
            |a| {
                a.factors.pop();
            },
            |a| a.factors[0].factor = Factor::BurstVolume,
            |a| a.factors[1].value_bps += 1,
            |a| a.factors[2].weight_bps += 1,
            |a| a.factors[3].contribution_bps += 1,
            |a| a.factors[4].explanation.push('.'),
        ];
        for (i, mutate) in mutations.into_iter().enumerate() {
            let mut altered = assessment.clone();
            mutate(&mut altered);
            assert_ne!(altered.hash(), assessment.hash(), "mutation {i}");
        }
    }

    #[test]
    fn truncation_does_not_change_the_factors() {
        // given 1300 detections: one flapping alarm and four late distinct alarms
        let mut all: Vec<Detection> = (0..1296).map(|i| detection("flap", Sev4, T0 + i)).collect();
        for (i, alarm) in ["b", "c", "d", "e"].iter().enumerate() {
            all.push(detection_full(
                "orders",
                alarm,
                Sev2,
                T0 + 200_000 + i as i64,
                alarm,
                false,
            ));
        }
        let bundle = bundle_of(all.clone());
        assert!(bundle.truncated && bundle.members.len() == BUNDLE_MEMBERS_MAX);
        let values = |members: &[Detection]| factor_values(members).map(|(value, _)| value);
        assert_eq!(values(&bundle.members), values(&all));
    }

    fn arbitrary_members() -> impl Strategy<Value = Vec<Detection>> {
        proptest::collection::vec(
            (
                0usize..6,
                0usize..4,
                0i64..WindowMs::DEFAULT.get(),
                0usize..3,
            ),
            1..30,
        )
        .prop_map(|picks| {
            picks
                .into_iter()
                .map(|(alarm, severity, offset, rule)| {
                    detection_full(
                        "orders",
                        &format!("alarm-{alarm}"),
                        Severity::ALL[severity],
                        T0 + offset,
                        &format!("rule-{rule}"),
                        false,
                    )
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn scores_stay_on_the_scale_and_match_the_breakdown(members in arbitrary_members()) {
            let assessment = assess(&ConfidenceModel::v1(), &bundle_of(members));
            prop_assert!(assessment.score_bps <= BPS_MAX);
            let products: u64 = assessment
                .factors
                .iter()
                .map(|line| u64::from(line.weight_bps) * u64::from(line.value_bps))
                .sum();
            prop_assert_eq!(u64::from(assessment.score_bps), products / 10_000);
            prop_assert!(assessment.factors.iter().all(|line| line.value_bps <= BPS_MAX));
        }

        #[test]
        fn adding_detections_never_undoes_a_promotion(base in arbitrary_members(), extra in arbitrary_members()) {
            let model = ConfidenceModel::v1();
            let before = assess(&model, &bundle_of(base.clone()));
            let mut superset = base;
            superset.extend(extra);
            let after = assess(&model, &bundle_of(superset));
            prop_assert!(!before.reaches_threshold() || after.reaches_threshold());
        }
    }
}
