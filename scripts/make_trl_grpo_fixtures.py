"""TRL parity fixture for evalverse_train::grpo (advantages and the clipped GRPO loss).

The loss numbers come from TRL's own `GRPOTrainer._compute_loss` (trl 1.16): the trainer is
made with `GRPOTrainer.__new__` and given, from a real `GRPOConfig`, exactly the attributes
`_compute_loss` reads; `_get_per_token_logps_and_entropies` is replaced by a stub returning the
fixture's policy log-probs (a leaf tensor, so the script also records TRL's gradient of the loss
with respect to them). Old and reference log-probs are passed as the `old_per_token_logps` /
`ref_per_token_logps` batch columns, as TRL's generation step stores them. Configurations:
loss_type grpo / bnpo / dr_grpo, beta 0.04 and 0, epsilon 0.2 (and epsilon_high 0.28, DAPO's
clip-higher), and with beta 0.04 TRL's `use_bias_correction_kl` on (its default: the k3 KL term
multiplied by the importance ratio) and off. The logged `kl` and `clip_ratio/{low,high,region}_mean` are recorded too.

The advantages are TRL's formula from `_generate_and_score_completions` (group mean, TRL's
`nanstd` with Bessel's correction, `/ (std + 1e-4)`, or unscaled for scale_rewards="none"),
computed here with TRL's `nanstd`; that block is inline in the generation method and cannot be
called alone.

Inputs are f32-exact multiples of 2^-10. Run from the repository root:
    /work/venv/bin/python scripts/make_trl_grpo_fixtures.py
"""
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import trl
from accelerate import Accelerator
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import nanstd

OUT = Path("crates/evalverse-train/tests/fixtures/trl_grpo.json")
SEED = 20261206
GROUP, N_GROUPS, T = 4, 2, 6
GRID = 1024.0


def q(x):
    return np.round(np.asarray(x, dtype=np.float64) * GRID) / GRID


def make_inputs():
    rng = np.random.default_rng(SEED)
    n = GROUP * N_GROUPS
    old = q(rng.uniform(-4.0, -0.05, (n, T)))
    # The policy moved from the sampling policy by up to +-0.4 in log-prob: some ratios leave
    # [0.8, 1.2] (clipped), most do not.
    logp = q(np.minimum(old + rng.uniform(-0.4, 0.4, (n, T)), -0.01))
    ref = q(np.minimum(old + rng.uniform(-0.3, 0.3, (n, T)), -0.01))
    lengths = rng.integers(2, T + 1, n)
    lengths[0] = T
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float64)
    rewards = q(rng.choice([0.0, 0.1, 0.4, 0.7, 1.0], n))
    rewards[GROUP:2 * GROUP] = q(0.7)  # a group of equal rewards: zero advantages
    return dict(old=old, logp=logp, ref=ref, mask=mask, rewards=rewards)


def trl_advantages(rewards, scale):
    r = torch.tensor(rewards, dtype=torch.float64)
    mean = torch.nanmean(r.view(-1, GROUP), dim=1).repeat_interleave(GROUP, dim=0)
    std = nanstd(r.view(-1, GROUP), dim=1).repeat_interleave(GROUP, dim=0)
    adv = r - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


class StubModel:
    training = True


def trl_loss(inp, adv, loss_type, beta, eps_low, eps_high, bias_kl):
    args = GRPOConfig(output_dir="/tmp/grpo-fixture", beta=beta, epsilon=eps_low, epsilon_high=eps_high,
                      loss_type=loss_type, max_completion_length=T, report_to=[], bf16=False, use_cpu=True,
                      use_bias_correction_kl=bias_kl)
    tr = GRPOTrainer.__new__(GRPOTrainer)
    tr.args = args
    tr.beta = args.beta
    tr.loss_type = args.loss_type
    tr.epsilon_low = args.epsilon
    tr.epsilon_high = args.epsilon_high
    tr.importance_sampling_level = args.importance_sampling_level
    tr.top_entropy_quantile = args.top_entropy_quantile
    tr.off_policy_mask_threshold = getattr(args, "off_policy_mask_threshold", None)
    tr.use_vllm = False
    tr.vllm_importance_sampling_correction = False
    tr.aux_loss_enabled = False
    tr._entropy_bonus_enabled = False
    tr.max_completion_length = T
    tr.current_gradient_accumulation_steps = 1
    tr.accelerator = Accelerator(cpu=True)
    tr._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    tr.model = StubModel()
    logp = torch.tensor(inp["logp"], dtype=torch.float64, requires_grad=True)

    def stub(model, input_ids, attention_mask, logits_to_keep, **kw):
        return logp, torch.zeros_like(logp), None

    tr._get_per_token_logps_and_entropies = stub
    n = logp.shape[0]
    inputs = {
        "prompt_ids": torch.zeros((n, 1), dtype=torch.long),
        "prompt_mask": torch.ones((n, 1), dtype=torch.long),
        "completion_ids": torch.zeros((n, T), dtype=torch.long),
        "completion_mask": torch.tensor(inp["mask"], dtype=torch.long),
        "advantages": adv,
        "old_per_token_logps": torch.tensor(inp["old"], dtype=torch.float64),
        "ref_per_token_logps": torch.tensor(inp["ref"], dtype=torch.float64),
    }
    loss = tr._compute_loss(None, inputs)
    loss.backward()
    m = tr._metrics["train"]
    return {
        "loss": loss.item(),
        "grad_logp": logp.grad.numpy().tolist(),
        "kl": m["kl"][0] if beta != 0.0 else 0.0,
        "clip_low": m["clip_ratio/low_mean"][0],
        "clip_high": m["clip_ratio/high_mean"][0],
        "clip_region": m["clip_ratio/region_mean"][0],
    }


def main():
    torch.set_num_threads(1)
    inp = make_inputs()
    for v in ("old", "logp", "ref", "rewards"):
        assert np.all(inp[v].astype(np.float32).astype(np.float64) == inp[v])
    cases = []
    for scale in ("group", "none"):
        adv = trl_advantages(inp["rewards"], scale)
        for loss_type in ("grpo", "bnpo", "dr_grpo"):
            for beta in (0.04, 0.0):
                for eps_low, eps_high in ((0.2, 0.2), (0.2, 0.28)):
                  for bias_kl in ((True, False) if beta != 0.0 else (True,)):
                    out = trl_loss(inp, adv, loss_type, beta, eps_low, eps_high, bias_kl)
                    cases.append(dict(scale_rewards=scale, loss_type=loss_type, beta=beta,
                                      epsilon_low=eps_low, epsilon_high=eps_high,
                                      use_bias_correction_kl=bias_kl,
                                      advantages=adv.numpy().tolist(), **out))
    doc = {
        "generator": "scripts/make_trl_grpo_fixtures.py",
        "versions": {"trl": trl.__version__, "torch": torch.__version__},
        "group": GROUP,
        "max_completion_length": T,
        "inputs": {k: v.tolist() for k, v in inp.items()},
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases; losses {[round(c['loss'], 6) for c in cases]}")


if __name__ == "__main__":
    main()
