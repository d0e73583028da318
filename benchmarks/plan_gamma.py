"""Choose γ from measured costs: block ratios, drafter cost, expected speed-up.

  .venv/bin/python -m benchmarks.plan_gamma                  # Gemma 3 270M
  .venv/bin/python -m benchmarks.plan_gamma --verifier multi30k_t5_large \\
      --drafter size=multi30k_t5_small --prompt_len 40 --max_decode_len 64

For a verifier and candidate drafters (random weights at the named shapes,
float32 as the sweeps run on a CPU or `--dtype`, in the sweeps' thread
setting: costs depend on shapes, not values), it times each model call as a
decoding loop makes it
(`benchmarks.costs.step_cost`: the call, its logit processing and, for a
sampling step, the draw, repeated inside one compiled loop) and prints:

* b(γ) = t_p(γ + 1) / t_p(1): the verifier's γ+1-token verification call
  (score and process every row) over its autoregressive step;
* c = t_q / t_p(1): a drafter step (score one token, process, sample) over
  the verifier's step;
* for each acceptance rate α given, the expected speed-up of speculative
  decoding at γ = 1..`--max_gamma` (Leviathan et al.'s formula with the
  measured block cost in place of "a block costs one step"):
  S(α, γ) = (1 − α^(γ+1)) / ((1 − α) · (γ·c + b(γ))),
  and the γ that maximises it.

It ignores prefill and assumes i.i.d. acceptance. With `--loop` it also
measures the decoding loops' own cost per iteration at the verifier's
vocabulary (`benchmarks.loop_cost`: the autoregressive loop and speculative
decoding at each γ, with models that cost nothing, greedy) and adds
S_loop(α, γ) = (1 − α^(γ+1)) / (1 − α) · (t_p(1) + L_ar) /
(γ·t_q + t_p(γ+1) + L(γ)): the same formula with the bookkeeping in. It is
conservative: L also counts the logit processing and sampling that t_p and
t_q already include. A drafter is given
as `size=NAME` (a `harness.models.get_config` or shipped size name) or as
`subset=V,d_model=D,layers=L`: a Gemma 3 drafter over the verifier's
vocabulary whose output layer scores V tokens (`models.subset_vocab`; V
equal to the verifier's vocabulary means the full output layer).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from benchmarks import report
from harness.edge import cpu_threads
from harness.runner import calibration

DEFAULT_DRAFTERS = (
    "subset=262144,d_model=256,layers=2",  # the distilled drafter's shape
    "subset=32768,d_model=192,layers=4",
    "subset=16384,d_model=128,layers=2",
    "subset=8192,d_model=128,layers=2",
)


def expected_speedup(alpha: float, gamma: int, c: float,
                     block_ratio: float) -> float:
  """Expected speed-up over the verifier alone (see the module docstring)."""
  if not 0 <= alpha < 1:
    raise ValueError(f"acceptance {alpha} must be in [0, 1)")
  # γc + b = b (γ (c / b) + 1): Leviathan's formula at cost ratio c / b,
  # divided by b.
  return calibration.leviathan_speedup(alpha, gamma,
                                       c / block_ratio) / block_ratio


def loop_speedup(alpha: float, gamma: int, t_q: float, t_p: dict,
                 loop_s: dict) -> float:
  """S_loop(α, γ) of the module docstring (t_p[k]: k-token verifier call;
  loop_s: seconds per iteration, "ar" and γ)."""
  tokens = (1 - alpha ** (gamma + 1)) / (1 - alpha)
  return tokens * (t_p[1] + loop_s["ar"]) / (
      gamma * t_q + t_p[gamma + 1] + loop_s[str(gamma)])


def _loop_costs(verifier, max_gamma: int, max_decode_len: int) -> dict:
  """Seconds per loop iteration with free models: "ar" and each γ."""
  from benchmarks import loop_cost, runs  # pylint: disable=g-import-not-at-top
  specs = {"ar": runs.ar_spec("verifier", max_gamma)}
  specs.update({str(g): runs.RunSpec(f"spec_decode/g{g}", "spec_decode", g)
                for g in range(1, max_gamma + 1)})
  return {k: loop_cost.seconds_per_iteration(
      s, verifier.vocab_size, verifier.eos_id, max_decode_len, calls=5,
      repeats=3) for k, s in specs.items()}


def _drafter_config(spec: str, verifier_config):
  """(config, subset size or None) of a --drafter spec."""
  from harness.models.configs import GemmaConfig  # pylint: disable=g-import-not-at-top
  from harness.runner import pairs  # pylint: disable=g-import-not-at-top
  fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
  if set(fields) == {"size"}:
    return pairs.size_config(fields["size"]), None
  if set(fields) != {"subset", "d_model", "layers"}:
    raise ValueError(f"--drafter {spec!r}: give size=NAME or "
                     "subset=V,d_model=D,layers=L")
  if not isinstance(verifier_config, GemmaConfig):
    raise ValueError(f"--drafter {spec!r}: subset=... needs a Gemma "
                     "verifier; use size=NAME")
  d, layers = int(fields["d_model"]), int(fields["layers"])
  subset = int(fields["subset"])
  if not 0 < subset <= verifier_config.vocab_size:
    raise ValueError(f"--drafter {spec!r}: subset {subset} is not in "
                     f"[1, {verifier_config.vocab_size}]")
  head = 64
  config = dataclasses.replace(
      verifier_config, d_model=d, num_layers=layers,
      num_heads=max(1, d // head), num_kv_heads=1, head_dim=head, d_ff=4 * d,
      query_pre_attn_scalar=float(head), attention_types=())
  return config, (None if subset == verifier_config.vocab_size else subset)


def _model(config, subset=None, dtype="float32"):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from harness.models import T5Config, random_gemma, random_t5  # pylint: disable=g-import-not-at-top
  from harness.models import subset_vocab  # pylint: disable=g-import-not-at-top
  build = random_t5 if isinstance(config, T5Config) else random_gemma
  model = build(jax.random.key(0), config, jnp.dtype(dtype))
  if subset is not None:
    model = subset_vocab.restrict_output(model, np.arange(subset))
  return model


def plan(verifier: str, drafters: list[str], alphas: list[float],
         max_gamma: int, prompt_len: int, max_decode_len: int,
         calls: int, dtype: str = "float32", loop: bool = False) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import costs  # pylint: disable=g-import-not-at-top
  from harness import decoding  # pylint: disable=g-import-not-at-top
  from harness.models import cpu_matmul  # pylint: disable=g-import-not-at-top
  from harness.runner import pairs  # pylint: disable=g-import-not-at-top
  vconfig = pairs.size_config(verifier)
  configs = {spec: _drafter_config(spec, vconfig) for spec in drafters}
  big = _model(vconfig, dtype=dtype)
  prompt = (np.arange(prompt_len, dtype=np.int32) % 1000) + 3
  size = decoding.window_buffer_size(big, prompt_bucket=prompt_len,
                                     max_decode_len=max_decode_len,
                                     window=max_gamma + 1)

  def cost(model, kind, width):
    return costs.step_cost(model, prompt, prompt_len, kind=kind, width=width,
                           size=size, calls=calls, repeats=3)

  t_p = {1: cost(big, costs.SAMPLE, 1)}
  t_p.update({k: cost(big, costs.VERIFY, k) for k in range(2, max_gamma + 2)})
  loop_s = _loop_costs(big, max_gamma, max_decode_len) if loop else None
  rows = []
  for spec, (config, subset) in configs.items():
    t_q = cost(_model(config, subset, dtype), costs.SAMPLE, 1)
    c = t_q / t_p[1]
    speedups = {str(a): {str(g): expected_speedup(
        a, g, c, t_p[g + 1] / t_p[1]) for g in range(1, max_gamma + 1)}
                for a in alphas}
    best = {a: max(s, key=s.get) for a, s in speedups.items()}
    row = {"drafter": spec, "t_q_ms": 1e3 * t_q, "c": c,
           "speedup": speedups, "best_gamma": best}
    if loop_s:
      row["speedup_loop"] = {str(a): {str(g): loop_speedup(
          a, g, t_q, t_p, loop_s) for g in range(1, max_gamma + 1)}
                             for a in alphas}
    rows.append(row)
  return {"verifier": verifier, "dtype": dtype,
          "device": jax.devices()[0].device_kind, "prompt_len": prompt_len,
          "max_decode_len": max_decode_len, "small_m_kernel":
          cpu_matmul.status(),
          "t_p_ms": {str(k): 1e3 * v for k, v in t_p.items()},
          "block_ratio": {str(g): t_p[g + 1] / t_p[1]
                          for g in range(1, max_gamma + 1)},
          "alphas": alphas, "drafters": rows,
          "loop_us_per_iteration": ({k: 1e6 * v for k, v in loop_s.items()}
                                    if loop_s else None),
          "load_average": list(os.getloadavg())}


def render(result: dict) -> str:
  gammas = list(result["block_ratio"])
  lines = [
      f"## Choosing γ: {result['verifier']} on "
      f"{result.get('device', '?')}, {result.get('dtype', 'float32')} (prompt "
      f"{result['prompt_len']}, decode {result['max_decode_len']}; small-M "
      f"kernel {result['small_m_kernel']}; load average "
      f"{result['load_average'][0]:.2f})", "",
      "| | t_p(1) ms | " + " | ".join(f"b(γ={g})" for g in gammas) + " |",
      "|---|---|" + "---|" * len(gammas),
      f"| verifier | {result['t_p_ms']['1']:.2f} | " + " | ".join(
          f"{result['block_ratio'][g]:.3f}" for g in gammas) + " |", "",
      "| drafter | t_q ms | c | α | " + " | ".join(
          f"S(γ={g})" for g in gammas) + " | best γ |",
      "|---|---|---|---|" + "---|" * len(gammas) + "---|"]
  for row in result["drafters"]:
    for a, s in row["speedup"].items():
      lines.append(
          f"| {row['drafter']} | {row['t_q_ms']:.2f} | {row['c']:.3f} | {a} | "
          + " | ".join(f"{s[g]:.2f}" for g in gammas)
          + f" | {row['best_gamma'][a]} |")
  loop = result.get("loop_us_per_iteration")
  if loop:
    lines += [
        "", "The loop's own cost per iteration (models that cost nothing, "
        f"greedy): autoregressive {loop['ar']:.0f} µs; speculative "
        + ", ".join(f"γ = {g}: {loop[g]:.0f} µs" for g in gammas)
        + ". With it (S_loop, conservative):", "",
        "| drafter | α | " + " | ".join(f"S_loop(γ={g})" for g in gammas)
        + " |", "|---|---|" + "---|" * len(gammas)]
    for row in result["drafters"]:
      for a, s in row["speedup_loop"].items():
        lines.append(f"| {row['drafter']} | {a} | "
                     + " | ".join(f"{s[g]:.2f}" for g in gammas) + " |")
  return "\n".join(lines)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--verifier", default="gemma3_270m")
  p.add_argument("--drafter", action="append", default=None,
                 help="size=NAME or vocab=V,d_model=D,layers=L (repeatable)")
  p.add_argument("--acceptance", default="0.36,0.5,0.7",
                 help="comma-separated acceptance rates α in [0, 1)")
  p.add_argument("--max_gamma", type=int, default=5)
  p.add_argument("--prompt_len", type=int, default=256)
  p.add_argument("--max_decode_len", type=int, default=44)
  p.add_argument("--calls", type=int, default=8,
                 help="calls per timing (each is n and 2n calls, 3 repeats)")
  p.add_argument("--dtype", default="float32",
                 help="the models' weights (float32 as the sweeps run on a "
                 "CPU; bfloat16 on an accelerator)")
  p.add_argument("--loop", action="store_true",
                 help="also measure the loops' own cost and S_loop")
  p.add_argument("--cpu_threads", default=None)
  p.add_argument("--out", default="",
                 help="write plan_gamma_<verifier>.{json,md} in this folder")
  a = p.parse_args(argv)
  try:
    alphas = [float(x) for x in a.acceptance.split(",") if x]
    for x in alphas:
      expected_speedup(x, 1, 0.0, 1.0)
    cpu_threads.apply(a.cpu_threads)
    result = plan(a.verifier, a.drafter or list(DEFAULT_DRAFTERS), alphas,
                  a.max_gamma, a.prompt_len, a.max_decode_len, a.calls,
                  a.dtype, a.loop)
  except (ValueError, KeyError) as e:
    raise SystemExit(f"plan_gamma: {e}") from None
  text = render(result)
  print(text)
  if a.out:
    report.write_json_md(os.path.join(a.out, f"plan_gamma_{a.verifier}"),
                         result, text)
  return result


if __name__ == "__main__":
  main()
