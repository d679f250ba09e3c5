//! Training objectives, one per module, each an `trainer::Objective`: the items it trains on
//! and the loss of a micro-batch of them (the loss functions themselves are in losses.rs).
//!
//! - sft: next-token cross-entropy on the answer (SFT and caption pretraining).
//! - dpo: the DPO family on (consensus answer, perturbed score) pairs against cached reference
//!   log-probs.
//! - bt: Bradley-Terry on the expected score over the score tokens.
//! - bt_head: Bradley-Terry on a reward head over the final hidden states.
//! - distribution: KL(raters' histogram || score-token distribution).
//! - grpo: GRPO on sampled answers rewarded against the experts (grpo.rs at the crate root holds
//!   its pure rewards, advantages and loss).
//!
//! A new objective is a struct built by its stage (after the model and data are set up) that
//! implements `items` and `micro_batch`, and whichever of the per-step hook (`prepare_step`:
//! sampling from the policy), trainable tensors of its own (`params`), validation and
//! checkpoint hooks it needs; the stage passes it to `trainer::train`.

pub mod bt;
pub mod bt_head;
pub mod distribution;
pub mod dpo;
pub mod grpo;
pub mod sft;
