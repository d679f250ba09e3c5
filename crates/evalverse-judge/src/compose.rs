//! The stages after the VLM (EvalVerse §6, S_d = M(V, X) * I_gate): fusion of the VLM's score
//! with the operators' measurements, then the context gate that answers N/A when a dimension
//! does not apply to the clip. Both act on a `Judgement` and record what they did in it.

use evalverse_data::operators::{Evidence, GateDecision};
use evalverse_data::taxonomy::Scale;
use serde::{Deserialize, Serialize};

use crate::fusion::FusionModel;
use crate::harness::{Judgement, NaSource, Verdict};

/// Who decides that a dimension does not apply (N/A).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatePolicy {
    /// The context gate on the operators' evidence (shots, audio, speech, the prompt) and the
    /// taxonomy's applicability rules; the VLM's own N/A answers are overruled by its score.
    /// The default: on the bundled sample's held-out split it finds the experts' N/A labels
    /// that the VLM misses (docs/EVALUATION.md, "Context gate").
    #[default]
    Operators,
    /// The VLM's own "Score: N/A" only.
    Judge,
    /// N/A when either says so (the gate first).
    Both,
    /// Never N/A: every dimension is scored.
    Off,
}

impl GatePolicy {
    pub const ALL: [GatePolicy; 4] = [
        GatePolicy::Operators,
        GatePolicy::Judge,
        GatePolicy::Both,
        GatePolicy::Off,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            GatePolicy::Operators => "operators",
            GatePolicy::Judge => "judge",
            GatePolicy::Both => "both",
            GatePolicy::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Result<GatePolicy, String> {
        GatePolicy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("gate policy '{s}' (allowed: operators, judge, both, off)"))
    }

    /// Which stage answers N/A under this policy, given whether the gate and the VLM say N/A.
    pub fn na_source(self, gate_na: bool, judge_na: bool) -> Option<NaSource> {
        match self {
            GatePolicy::Operators => gate_na.then_some(NaSource::Gate),
            GatePolicy::Judge => judge_na.then_some(NaSource::Judge),
            GatePolicy::Both if gate_na => Some(NaSource::Gate),
            GatePolicy::Both => judge_na.then_some(NaSource::Judge),
            GatePolicy::Off => None,
        }
    }

    /// Whether the policy needs the operators' evidence.
    pub fn uses_operators(&self) -> bool {
        matches!(self, GatePolicy::Operators | GatePolicy::Both)
    }
}

impl std::fmt::Display for GatePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Judgement {
    /// The VLM's score that enters fusion: `vlm_soft`, or `soft` for judgements written before
    /// the stages were recorded.
    pub fn vlm_input(&self) -> f64 {
        self.vlm_soft.unwrap_or(self.soft)
    }

    /// Apply the fusion model (when it covers this dimension): the fused prediction, on the
    /// scale, becomes the soft score and sets the level of a `Score` verdict.
    pub fn fuse(&mut self, model: &FusionModel, ev: &Evidence, scale: &Scale) {
        if let Some(f) = model.predict(&self.dimension, self.vlm_input(), ev) {
            self.fused_soft = Some(f);
            self.rescore(f, scale);
        }
    }

    /// Apply the context gate under `policy`. `decision` is the gate's on this clip and
    /// dimension (None when no evidence could be measured: the gate abstains). A dimension a
    /// policy keeps that the VLM called N/A is scored with its soft score.
    pub fn gate(&mut self, policy: GatePolicy, decision: Option<&GateDecision>, scale: &Scale) {
        let gate_na = decision.is_some_and(|d| !d.applies);
        let judge_na = self.text_verdict.unwrap_or(self.verdict) == Verdict::NotApplicable;
        let na = policy.na_source(gate_na, judge_na);
        self.na_source = na;
        if na.is_some() {
            self.verdict = Verdict::NotApplicable;
        } else if self.verdict == Verdict::NotApplicable {
            self.verdict = Verdict::Score(self.soft);
            self.rescore(self.soft, scale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evalverse_data::operators::GateSource;

    fn j(text: Verdict, soft: f64) -> Judgement {
        Judgement {
            clip_id: "c".into(),
            prompt_group: "g".into(),
            generator: "m".into(),
            dimension: "vocal".into(),
            answer: String::new(),
            verdict: text,
            soft,
            distribution: vec![],
            text_verdict: Some(text),
            token_soft: Some(soft),
            vlm_soft: Some(soft),
            ..Default::default()
        }
    }

    fn scale() -> Scale {
        Scale {
            min: 1.0,
            max: 5.0,
            step: 1.0,
            labels: vec![],
        }
    }

    fn decision(applies: bool) -> GateDecision {
        GateDecision {
            applies,
            source: GateSource::Evidence,
            reason: "silent".into(),
        }
    }

    #[test]
    fn each_policy_answers_na_from_its_own_source() {
        let s = scale();
        let cases = [
            // (policy, VLM said N/A, gate says N/A) -> N/A source
            (GatePolicy::Operators, true, false, None),
            (GatePolicy::Operators, false, true, Some(NaSource::Gate)),
            (GatePolicy::Judge, true, true, Some(NaSource::Judge)),
            (GatePolicy::Judge, false, true, None),
            (GatePolicy::Both, true, false, Some(NaSource::Judge)),
            (GatePolicy::Both, true, true, Some(NaSource::Gate)),
            (GatePolicy::Off, true, true, None),
        ];
        for (policy, vlm_na, gate_na, want) in cases {
            let text = if vlm_na {
                Verdict::NotApplicable
            } else {
                Verdict::Score(4.0)
            };
            let mut x = j(text, 3.6);
            x.gate(policy, Some(&decision(!gate_na)), &s);
            assert_eq!(x.na_source, want, "{policy} vlm {vlm_na} gate {gate_na}");
            match want {
                Some(_) => assert_eq!(x.verdict, Verdict::NotApplicable),
                // A kept dimension is scored; an overruled N/A takes its soft score's level.
                None if vlm_na => assert_eq!(x.verdict, Verdict::Score(4.0)),
                None => assert_eq!(x.verdict, Verdict::Score(4.0)),
            }
            assert_eq!(x.text_verdict, Some(text), "the VLM's own verdict is kept");
        }
        // No evidence: the gate abstains.
        let mut x = j(Verdict::Score(2.0), 2.2);
        x.gate(GatePolicy::Operators, None, &s);
        assert_eq!((x.na_source, x.verdict), (None, Verdict::Score(2.0)));
    }

    #[test]
    fn policy_names_round_trip_and_unknown_ones_list_the_allowed() {
        for p in GatePolicy::ALL {
            assert_eq!(GatePolicy::parse(p.name()).unwrap(), p);
        }
        let e = GatePolicy::parse("maybe").unwrap_err();
        assert!(e.contains("operators, judge, both, off"), "{e}");
    }
}
