"""Choose γ from measured costs: block ratios, drafter cost, expected speed-up.

  .venv/bin/python -m benchmarks.plan_gamma                  # Gemma 3 270M
  .venv/bin/python -m benchmarks.plan_gamma --verifier multi30k_t5_large \\
      --drafter size=multi30k_t5_small --prompt_len 40 --max_decode_len 64

For a verifier and candidate drafters (random weights at the named shapes,
float32, in the sweeps' thread setting: costs depend on shapes, not
values), it times `score` as the sweeps' calibration does
(`calibration.time_score`, back-to-back calls inside one compiled loop) and
prints:

* b(γ) = t_p(γ + 1) / t_p(1), the verifier's block-cost ratio;
* c = t_q(1) / t_p(1), each drafter's cost per drafted token;
* for each acceptance rate α given, the expected speed-up of speculative
  decoding at γ = 1..`--max_gamma` (Leviathan et al.'s formula with the
  measured block cost in place of "a block costs one step"):
  S(α, γ) = (1 − α^(γ+1)) / ((1 − α) · (γ·c + b(γ))),
  and the γ that maximises it.

It ignores prefill, sampling and the loop's own work (`make bench` measures
those for the default pair) and assumes i.i.d. acceptance. A drafter is given
as `size=NAME` (a `harness.models.get_config` or shipped size name) or as
`vocab=V,d_model=D,layers=L`: a Gemma 3 drafter whose output layer has V
rows (a subset vocabulary of V tokens costs the same: its input embedding
reads only the K rows it looks up).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from harness.runner import cpu_threads

DEFAULT_DRAFTERS = (
    "vocab=262144,d_model=256,layers=2",  # the distilled drafter's shape
    "vocab=32768,d_model=192,layers=4",
    "vocab=16384,d_model=128,layers=2",
    "vocab=8192,d_model=128,layers=2",
)


def expected_speedup(alpha: float, gamma: int, c: float,
                     block_ratio: float) -> float:
  """Expected speed-up over the verifier alone (see the module docstring)."""
  if not 0 <= alpha < 1:
    raise ValueError(f"acceptance {alpha} must be in [0, 1)")
  tokens = (1 - alpha ** (gamma + 1)) / (1 - alpha)
  return tokens / (gamma * c + block_ratio)


def _drafter_config(spec: str, verifier_config):
  from harness.models.configs import GemmaConfig  # pylint: disable=g-import-not-at-top
  from harness.runner import pairs  # pylint: disable=g-import-not-at-top
  fields = dict(part.split("=", 1) for part in spec.split(",") if part)
  if set(fields) == {"size"}:
    return pairs.size_config(fields["size"])
  if set(fields) != {"vocab", "d_model", "layers"}:
    raise ValueError(f"--drafter {spec!r}: give size=NAME or "
                     "vocab=V,d_model=D,layers=L")
  d, layers = int(fields["d_model"]), int(fields["layers"])
  head = 64
  return dataclasses.replace(
      verifier_config, vocab_size=int(fields["vocab"]), d_model=d,
      num_layers=layers, num_heads=max(1, d // head), num_kv_heads=1,
      head_dim=head, d_ff=4 * d, query_pre_attn_scalar=float(head),
      attention_types=()) if isinstance(verifier_config, GemmaConfig) else (
          None)


def _model(config):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from harness.models import T5Config, random_gemma, random_t5  # pylint: disable=g-import-not-at-top
  build = random_t5 if isinstance(config, T5Config) else random_gemma
  return build(jax.random.key(0), config, jnp.float32)


def plan(verifier: str, drafters: list[str], alphas: list[float],
         max_gamma: int, prompt_len: int, max_decode_len: int,
         calls: int) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from harness.models import cpu_matmul  # pylint: disable=g-import-not-at-top
  from harness.runner import calibration, pairs  # pylint: disable=g-import-not-at-top
  vconfig = pairs.size_config(verifier)
  configs = {}  # every drafter checked before anything is timed
  for spec in drafters:
    config = _drafter_config(spec, vconfig)
    if config is None:
      raise ValueError(f"--drafter {spec!r}: vocab=... needs a Gemma "
                       "verifier; use size=NAME")
    if config.vocab_size > vconfig.vocab_size:
      raise ValueError(f"--drafter {spec!r}: vocabulary {config.vocab_size} "
                       f"exceeds the verifier's {vconfig.vocab_size}")
    configs[spec] = config
  big = _model(vconfig)
  prompt = (np.arange(prompt_len, dtype=np.int32) % 1000) + 3

  def cost(model, width):
    return calibration.time_score(model, width, calls, prompt,
                                  max_decode_len, prompt_len)

  t_p = {k: cost(big, k) for k in range(1, max_gamma + 2)}
  rows = []
  for spec, config in configs.items():
    t_q = cost(_model(config), 1)
    c = t_q / t_p[1]
    speedups = {str(a): {str(g): expected_speedup(
        a, g, c, t_p[g + 1] / t_p[1]) for g in range(1, max_gamma + 1)}
                for a in alphas}
    best = {a: max(s, key=s.get) for a, s in speedups.items()}
    rows.append({"drafter": spec, "t_q_ms": 1e3 * t_q, "c": c,
                 "speedup": speedups, "best_gamma": best})
  return {"verifier": verifier, "prompt_len": prompt_len,
          "max_decode_len": max_decode_len, "small_m_kernel":
          cpu_matmul.status(),
          "t_p_ms": {str(k): 1e3 * v for k, v in t_p.items()},
          "block_ratio": {str(g): t_p[g + 1] / t_p[1]
                          for g in range(1, max_gamma + 1)},
          "alphas": alphas, "drafters": rows,
          "load_average": list(os.getloadavg())}


def render(result: dict) -> str:
  gammas = list(result["block_ratio"])
  lines = [
      f"## Choosing γ: {result['verifier']} (prompt "
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
  p.add_argument("--calls", type=int, default=30)
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
                  a.max_gamma, a.prompt_len, a.max_decode_len, a.calls)
  except (ValueError, KeyError) as e:
    raise SystemExit(f"plan_gamma: {e}") from None
  text = render(result)
  print(text)
  if a.out:
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, f"plan_gamma_{a.verifier}")
    with open(stem + ".json", "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
    with open(stem + ".md", "w", encoding="utf-8") as f:
      f.write(text + "\n")
  return result


if __name__ == "__main__":
  main()
