"""TRL parity fixture for evalverse_train::losses::dpo_loss (DPO family: sigmoid, ipo, hinge, robust).

The numbers come from TRL's own code: `DPOTrainer._compute_loss` (TRL >= 1.x has no separate
`dpo_loss` method; the loss types, the log-ratios and the `rewards/chosen` / `rewards/rejected`
metrics are all computed inline there). The trainer is made with `DPOTrainer.__new__` and given,
from a real `DPOConfig`, exactly the attributes `DPOTrainer.__init__` sets and `_compute_loss`
reads; the model is a stub whose fused-LM-head output `log_probs` is the policy log-prob of each
completion as a single completion token, and the reference log-probs are passed precomputed
(`precompute_ref_log_probs=True`, the `ref_chosen_logps` / `ref_rejected_logps` batch columns).
Each pair is its own batch of one, so the returned loss (a batch mean) is that pair's loss and
the logged reward means are that pair's rewards. A last call on all pairs at once records TRL's
batch-mean loss as a check of the per-pair split.

With one completion token per sequence, TRL's IPO length normalisation (scores divided by the
completion-token count) divides by 1, so both sides see the same log-probs.

Inputs are f32-exact multiples of 2^-10 in [-50, -5] (policy = reference + U(-3, 3)), so the
log-ratio h is exact in f32 and an f32 implementation can agree with TRL's float64 numbers to
well under 1e-5 even for IPO's squared loss. TRL runs in float64; the float32 run's largest
departure from it is recorded per configuration as `trl_f32_vs_f64_max_abs`.

Run from the repository root:  /work/venv/bin/python scripts/make_trl_fixtures.py
"""
import inspect
import json
from collections import defaultdict
from pathlib import Path

import accelerate
import numpy as np
import torch
import transformers
import trl
from accelerate import Accelerator
from trl import DPOConfig, DPOTrainer

OUT = Path("crates/evalverse-train/tests/fixtures/trl_dpo.json")
SEED = 20240611
N_PAIRS = 16
GRID = 1024.0  # inputs are multiples of 2^-10


def make_inputs():
    rng = np.random.default_rng(SEED)
    ref_c = rng.uniform(-50.0, -5.0, N_PAIRS)
    ref_r = rng.uniform(-50.0, -5.0, N_PAIRS)
    pol_c = np.clip(ref_c + rng.uniform(-3.0, 3.0, N_PAIRS), -50.0, -5.0)
    pol_r = np.clip(ref_r + rng.uniform(-3.0, 3.0, N_PAIRS), -50.0, -5.0)
    # Pair 0: policy == reference (the first step of training): h = 0, rewards 0.
    pol_c[0], pol_r[0] = ref_c[0], ref_r[0]
    # Pair 1: h = 6 - (-6) = 12, past the hinge for beta = 0.1 (1 - 0.1 h < 0).
    ref_c[1], pol_c[1], ref_r[1], pol_r[1] = -30.0, -24.0, -20.0, -26.0
    q = lambda x: np.round(x * GRID) / GRID  # noqa: E731
    out = {k: q(v) for k, v in dict(policy_chosen=pol_c, policy_rejected=pol_r, ref_chosen=ref_c, ref_rejected=ref_r).items()}
    for v in out.values():
        assert np.all(v.astype(np.float32).astype(np.float64) == v)
    return out


class StubOutput:
    """What the fused LM head returns to `_compute_loss`: one completion token per sequence."""

    def __init__(self, logps):
        n = logps.shape[0]
        self.log_probs = logps.reshape(n, 1)
        self.entropy = torch.zeros(n, 1, dtype=logps.dtype)
        self.mean_logits = torch.zeros(n, 1, dtype=logps.dtype)
        self.is_top1 = torch.zeros(n, 1, dtype=torch.bool)


class StubPolicy:
    training = True

    def __init__(self, logps):
        self.logps = logps  # [2b]: chosen rows then rejected rows

    def __call__(self, **kwargs):
        assert kwargs["fused_lm_head"] is True
        return StubOutput(self.logps)


def trl_trainer(loss_type, beta, label_smoothing):
    args = DPOConfig(
        output_dir="/tmp/make_trl_fixtures",
        loss_type=loss_type,
        beta=beta,
        label_smoothing=label_smoothing,
        precompute_ref_log_probs=True,
        report_to="none",
        bf16=False,
        use_cpu=True,
    )
    t = DPOTrainer.__new__(DPOTrainer)
    # The attributes DPOTrainer.__init__ sets from args (trl/trainer/dpo_trainer.py) that _compute_loss reads.
    t.args = args
    t.beta = args.beta
    t.precompute_ref_logps = args.precompute_ref_log_probs
    t.loss_types = args.loss_type
    t.loss_weights = args.loss_weights or [1.0] * len(t.loss_types)
    t.ld_alpha = args.ld_alpha
    t.f_divergence_type = args.f_divergence_type
    t.f_alpha_divergence_coef = args.f_alpha_divergence_coef
    t.label_smoothing = args.label_smoothing
    t.use_weighting = args.use_weighting
    t.aux_loss_enabled = False
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    t._total_train_tokens = 0
    t._tp_size = 1
    # Made after the config: TrainingArguments.__post_init__ resets the accelerate state.
    t.accelerator = Accelerator(cpu=True)
    return t


def trl_call(t, pc, pr, rc, rr, dtype):
    """DPOTrainer._compute_loss on a batch of len(pc) pairs -> (mean loss, mean chosen reward, mean rejected reward)."""
    b = len(pc)
    logps = torch.tensor(np.concatenate([pc, pr]), dtype=dtype)
    policy = StubPolicy(logps)
    t.model = policy
    inputs = {
        "input_ids": torch.ones(2 * b, 2, dtype=torch.long),
        "attention_mask": torch.ones(2 * b, 2, dtype=torch.long),
        "completion_mask": torch.tensor([[0, 1]] * (2 * b), dtype=torch.long),
        "ref_chosen_logps": torch.tensor(rc, dtype=dtype),
        "ref_rejected_logps": torch.tensor(rr, dtype=dtype),
    }
    loss = t._compute_loss(policy, inputs, return_outputs=False)
    m = t._metrics["train"]
    return float(loss), m["rewards/chosen"][-1], m["rewards/rejected"][-1]


def main():
    x = make_inputs()
    configs = []
    for loss_type in ["sigmoid", "ipo", "hinge", "robust"]:
        for beta in [0.1, 0.5]:
            for eps in [0.0, 0.2] if loss_type in ("sigmoid", "robust") else [0.0]:
                res = {}
                for dtype in (torch.float64, torch.float32):
                    t = trl_trainer(loss_type, beta, eps)
                    per = [trl_call(t, *(x[k][i : i + 1] for k in ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")), dtype) for i in range(N_PAIRS)]
                    batch = trl_call(t, x["policy_chosen"], x["policy_rejected"], x["ref_chosen"], x["ref_rejected"], dtype)
                    res[dtype] = (np.array(per), batch)
                per64, batch64 = res[torch.float64]
                per32, _ = res[torch.float32]
                assert abs(per64[:, 0].mean() - batch64[0]) < 1e-12, (loss_type, beta, eps)
                configs.append(
                    {
                        "loss_type": loss_type,
                        "beta": beta,
                        "label_smoothing": eps,
                        "losses": per64[:, 0].tolist(),
                        "chosen_rewards": per64[:, 1].tolist(),
                        "rejected_rewards": per64[:, 2].tolist(),
                        "batch_mean_loss": batch64[0],
                        "trl_f32_vs_f64_max_abs": float(np.abs(per32 - per64).max()),
                    }
                )
                print(f"{loss_type:8s} beta={beta} eps={eps}: mean loss {batch64[0]:.6f}, max loss {per64[:, 0].max():.4f}")

    # Does TRL's sigmoid read label_smoothing? (TRL 0.x applied cDPO smoothing there; 1.x does not.)
    by = {(c["loss_type"], c["beta"], c["label_smoothing"]): c for c in configs}
    reads_eps = {
        lt: any(by[(lt, b, 0.2)]["losses"] != by[(lt, b, 0.0)]["losses"] for b in (0.1, 0.5)) for lt in ("sigmoid", "robust")
    }
    print("TRL reads label_smoothing for:", reads_eps)

    src = inspect.getsource(DPOTrainer._compute_loss)
    fixture = {
        "about": "DPOTrainer._compute_loss outputs (float64) per pair; see scripts/make_trl_fixtures.py",
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__},
        "trl_code_path": "trl.trainer.dpo_trainer.DPOTrainer._compute_loss",
        "trl_reads_label_smoothing": reads_eps,
        "trl_sigmoid_source_line": next(l.strip() for l in src.splitlines() if "per_sequence_loss = -F.logsigmoid(self.beta * delta_score)" in l),
        "seed": SEED,
        "inputs": {k: v.tolist() for k, v in x.items()},
        "configs": configs,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT} ({len(configs)} configurations x {N_PAIRS} pairs), trl {trl.__version__}")


if __name__ == "__main__":
    main()
