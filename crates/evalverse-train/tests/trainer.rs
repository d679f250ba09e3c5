//! The trainer's contract with an objective, what a sampling objective (GRPO) relies on:
//! `prepare_step` sees each step's micro-batches, in order, before they are asked for, with a
//! seed per step that a resumed run draws again; the metrics of `prepare_step` reach
//! metrics.jsonl as they are and those of the micro-batches averaged over the step.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::DType;
use common::{recipe, sequences, tiny_base, Text, B};
use evalverse_model::lora::apply_lora;
use evalverse_model::QwenVl;
use evalverse_train::recipe::Recipe;
use evalverse_train::runtime::TrainError;
use evalverse_train::trainer::{self, Metrics, MicroBatch, Objective, StepPlan};

/// The backend RNG (dropout) and thread pool are the process's: two runs at once would draw
/// each other's numbers. The tests here take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// (step, micro-batches, seed) of every `prepare_step` call.
type Plans = Rc<RefCell<Vec<(usize, Vec<Vec<usize>>, u64)>>>;

/// `Text`, recording the plans and checking that the micro-batches asked for are the planned
/// ones; "reward" = step + 0.5 from `prepare_step`, "kl" = k from micro-batch k.
struct Recording {
    text: Text,
    plans: Plans,
    pending: Vec<Vec<usize>>,
}

impl Objective<B> for Recording {
    fn items(&self) -> usize {
        self.text.items()
    }

    fn prepare_step(&mut self, _model: &QwenVl<B>, plan: &StepPlan) -> Result<Metrics, TrainError> {
        assert!(
            self.pending.is_empty(),
            "the previous step's micro-batches were not all asked for"
        );
        self.plans
            .borrow_mut()
            .push((plan.step, plan.micro_batches.to_vec(), plan.seed));
        self.pending = plan.micro_batches.to_vec();
        Ok(vec![("reward".into(), plan.step as f64 + 0.5)])
    }

    fn micro_batch(
        &mut self,
        model: &QwenVl<B>,
        k: usize,
        items: &[usize],
    ) -> Result<MicroBatch<B>, TrainError> {
        assert_eq!(
            items,
            self.pending[k].as_slice(),
            "micro-batch {k} is not the planned one"
        );
        if k + 1 == self.pending.len() {
            self.pending.clear();
        }
        let mut mb = self.text.micro_batch(model, k, items)?;
        mb.metrics = vec![("kl".into(), k as f64)];
        Ok(mb)
    }
}

fn run(
    r: &Recipe,
    base: &std::path::Path,
    resume: bool,
    stop_at: usize,
    plans: &Plans,
) -> Result<Vec<(usize, f64)>, TrainError> {
    let device = Default::default();
    let mut model = QwenVl::<B>::from_source(base.to_str().unwrap(), DType::F32, &device).unwrap();
    apply_lora(&mut model, &trainer::lora_config(r)).unwrap();
    let mut objective = Recording {
        text: Text(sequences()),
        plans: plans.clone(),
        pending: vec![],
    };
    trainer::train(
        r,
        &mut model,
        &mut objective,
        resume,
        vec![],
        &device,
        &|s| s == stop_at,
    )
    .map(|s| s.losses)
}

#[test]
fn prepare_step_sees_each_steps_micro_batches_first_and_its_metrics_are_logged() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let r = recipe(dir.path(), &base, "plans", 4, 0.0);
    let plans = Plans::default();
    run(&r, &base, false, 0, &plans).unwrap();
    let plans = plans.borrow();
    assert_eq!(
        plans.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(plans
        .iter()
        .all(|p| p.1.len() == r.train.grad_accum
            && p.1.iter().all(|b| b.len() == r.train.batch_size)));
    let mut seeds: Vec<u64> = plans.iter().map(|p| p.2).collect();
    seeds.dedup();
    assert_eq!(seeds.len(), 4, "one seed per step");
    let log = std::fs::read_to_string(dir.path().join("plans/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["step"], i + 1);
        assert_eq!(line["reward"].as_f64(), Some(i as f64 + 0.5), "{line}");
        // kl is 0 and 1 in the step's two micro-batches: logged as their mean.
        assert_eq!(line["kl"].as_f64(), Some(0.5), "{line}");
    }
}

#[test]
fn a_resumed_run_plans_the_same_micro_batches_with_the_same_seeds() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let straight_plans = Plans::default();
    let straight = run(
        &recipe(dir.path(), &base, "straight", 4, 0.1),
        &base,
        false,
        0,
        &straight_plans,
    )
    .unwrap();

    let r = recipe(dir.path(), &base, "resumed", 4, 0.1);
    let plans = Plans::default();
    assert!(matches!(
        run(&r, &base, false, 2, &plans),
        Err(TrainError::Interrupted { step: 2, .. })
    ));
    let resumed = run(&r, &base, true, 0, &plans).unwrap();
    assert_eq!(*plans.borrow(), *straight_plans.borrow());
    assert_eq!(resumed, straight);
}
