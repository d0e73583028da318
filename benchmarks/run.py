"""Orchestrates one benchmark run and assembles bench.json (docs/bench.md)."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys

import jax

from benchmarks import (analysis, costs, hf, loop_cost, memory, report,
                        runs, timing)
from benchmarks.config import (SPEC_METHODS, SWEEP_ALPHAS,
                                  TOKEN_CASCADE_ALPHA, BenchConfig)
from benchmarks.pair import Pair, Prompts, load_pair, task_prompts
from harness import decoding
from harness.models import cpu_matmul

MS = 1e3
# γ of the autoregressive runs: only sets their buffer (window 2, smallest).
AR_GAMMA = 1
# Prompts are cut to the task's input limit.
MAX_PROMPT_LEN = 64
# Calls per timed repeat of the loop-only measurement.
LOOP_ONLY_CALLS = 5


def _log(msg: str) -> None:
  print(f"bench: {msg}", file=sys.stderr, flush=True)


def spec_run(method: str, gamma: int) -> runs.RunSpec:
  alpha = TOKEN_CASCADE_ALPHA if method == "spec_cascade_token" else 0.0
  return runs.RunSpec(f"{method}/g{gamma}", method, gamma, alpha)


def buffer_size(pair: Pair, prompts: Prompts, max_decode_len: int,
                gamma: int) -> int:
  """The speculative programs' buffer size at γ (``decoding.buffer_size``)."""
  return decoding.buffer_size(
      "spec_decode", pair.drafter, pair.verifier,
      prompt_bucket=prompts.bucket, gamma=gamma,
      max_decode_len=max_decode_len, options={})


def measure_costs(pair: Pair, prompts: Prompts, cfg: BenchConfig,
                  gammas: tuple[int, ...]) -> dict[int, analysis.Costs]:
  """Isolated call costs; {γ: Costs}, with AR_GAMMA for the AR runs.

  Calls whose cost does not depend on γ are timed once, at the largest
  buffer (attention spans the whole static buffer; the sizes differ by a
  few positions, a negligible share of a call). The verifier's γ+1-token
  call is timed at each γ's own buffer size.
  """
  prompt, plen = prompts.padded[0], int(prompts.lengths[0])

  def step(model, kind, width, gamma):
    return costs.step_cost(
        model, prompt, plen, kind=kind, width=width,
        size=buffer_size(pair, prompts, cfg.max_decode_len, gamma),
        calls=cfg.step_calls, repeats=cfg.repeats)

  big = max(gammas)
  size = buffer_size(pair, prompts, cfg.max_decode_len, big)
  shared = dict(
      drafter_step=step(pair.drafter, costs.SAMPLE, 1, big),
      drafter_first=step(pair.drafter, costs.SAMPLE, 2, big),
      verifier_step=step(pair.verifier, costs.SAMPLE, 1, big),
      drafter_prefill=costs.prefill_cost(pair.drafter, prompt, plen, size,
                                         cfg.repeats),
      verifier_prefill=costs.prefill_cost(pair.verifier, prompt, plen, size,
                                          cfg.repeats))
  return {g: analysis.Costs(
      verifier_block=step(pair.verifier, costs.VERIFY, g + 1, g)
      if g != AR_GAMMA else shared["verifier_step"], **shared)
          for g in (AR_GAMMA, *gammas)}


def compile_section(pair, prompts, cfg) -> dict:
  """α sweeps first, while no program is compiled yet."""
  out = {"compiles_per_program": {}, "compile_seconds": {}}
  programs = [runs.ar_spec("verifier", AR_GAMMA)] + [
      spec_run(m, g) for m in SPEC_METHODS for g in cfg.gammas]
  for spec in programs:
    _log(f"  α sweep of {spec.name}")
    res = runs.alpha_sweep(pair, prompts, spec, SWEEP_ALPHAS,
                           cfg.max_decode_len)
    key = str(spec.gamma) if spec.method != runs.AR else "-"
    out["compiles_per_program"].setdefault(spec.method, {})[key] = res.compiles
    out["compile_seconds"].setdefault(spec.method, {})[key] = (
        res.compile_seconds)
  return out


def loop_overheads(results, cost_table, ar_costs, num_prompts, cfg) -> dict:
  """{run name: wall time / isolated model calls}."""
  out = {}
  for name, res in results.items():
    seconds = res.passes.min
    if res.spec.method == runs.AR:
      drafter = dict(res.spec.options)["model"] == "drafter"
      step = ar_costs.drafter_step if drafter else ar_costs.verifier_step
      prefill = (ar_costs.drafter_prefill if drafter
                 else ar_costs.verifier_prefill)
      model = analysis.ar_model_seconds(res.stats, num_prompts, step, prefill)
    else:
      model = analysis.spec_model_seconds(res.stats, num_prompts,
                                          res.spec.gamma,
                                          cost_table[res.spec.gamma])
    out[name] = seconds / model
  return out


def efficiency_section(results, cost_table, ar_costs, num_prompts,
                       cfg) -> dict:
  ar = results["autoregressive/verifier"]
  eff, exact, detail = {}, {}, {}
  for method in SPEC_METHODS:
    for gamma in cfg.gammas:
      res = results[f"{method}/g{gamma}"]
      e = analysis.efficiency(res.stats, res.passes.min, ar.stats,
                              ar.passes.min, gamma, num_prompts,
                              cost_table[gamma], ar_costs)
      eff.setdefault(method, {})[str(gamma)] = e.efficiency
      exact.setdefault(method, {})[str(gamma)] = e.efficiency_exact
      detail.setdefault(method, {})[str(gamma)] = dataclasses.asdict(e)
  return {"efficiency": eff, "efficiency_exact": exact,
          "efficiency_detail": detail}


def hf_section(pair: Pair, prompts: Prompts, results, cfg) -> dict:
  """Ours vs transformers, greedy, same weights, prompts and lengths."""
  large = hf.load(pair.verifier_dir, cfg.hf_threads)
  small = hf.load(pair.drafter_dir, cfg.hf_threads)
  ids = [prompts.ids(i) for i in range(len(prompts))]
  ref = results["autoregressive/verifier"].tokens[0]
  diff = {name: hf.max_logit_difference(
      m, jm, ids[0], (0,) + ref[:-1] if ref else (0,))
          for name, m, jm in (("verifier", large, pair.verifier),
                              ("drafter", small, pair.drafter))}
  hf.configure_assistant(small, cfg.hf_gamma)
  plain = hf.time_generate(large, ids, cfg.max_decode_len, cfg.hf_repeats)
  assisted = hf.time_generate(large, ids, cfg.max_decode_len,
                              cfg.hf_repeats, assistant=small)
  ours_ar = results["autoregressive/verifier"]
  ours_spec = results[f"spec_decode/g{cfg.hf_gamma}"]
  out = {"max_logit_difference": diff, "gamma": cfg.hf_gamma,
         "threads": cfg.hf_threads}
  for kind, theirs, ours in (("autoregressive", plain, ours_ar),
                             ("speculative", assisted, ours_spec)):
    same = hf.compare_outputs(ours.tokens, theirs.tokens)
    out[kind] = {"ours_ms_per_token": MS * ours.seconds_per_token,
                 "hf_ms_per_token": MS * theirs.seconds_per_token,
                 "speedup": theirs.seconds_per_token / ours.seconds_per_token,
                 "identity": dataclasses.asdict(same)}
  return out


def device_info(load_start, load_end) -> dict:
  info = {"backend": jax.default_backend(), "devices": str(jax.devices()),
          "cpu": timing.cpu_name(), "cores": os.cpu_count(), "jax": jax.__version__,
          "small_m_kernel": cpu_matmul.status(),
          "python": platform.python_version(),
          "load_average_start": list(load_start),
          "load_average_end": list(load_end)}
  for mod in ("torch", "transformers"):
    if mod in sys.modules:
      info[mod] = sys.modules[mod].__version__
  return info


def run_hf_only(cfg: BenchConfig) -> dict:
  """Ours vs Hugging Face alone, at cfg.threads; writes hf_threads<N>.*."""
  load_start = timing.load_average()
  pair = load_pair(cfg.drafter_dir, cfg.verifier_dir)
  prompts = task_prompts(pair.tokenizer, cfg.task, cfg.num_prompts,
                         MAX_PROMPT_LEN)
  _log(f"{len(prompts)} prompts; ours and Hugging Face at {cfg.threads} "
       "thread(s)")
  specs = [runs.ar_spec("verifier", AR_GAMMA),
           spec_run("spec_decode", cfg.hf_gamma)]
  results = runs.run_all(pair, prompts, specs, cfg.max_decode_len,
                         cfg.repeats)
  cfg = dataclasses.replace(cfg, hf=True)
  out = _hf_keys(pair, prompts, results, cfg)
  out["device"] = device_info(load_start, timing.load_average())
  out["device"]["xla_cpu_threads"] = cfg.threads
  out["config"] = dataclasses.asdict(cfg)
  out["timestamp"] = datetime.datetime.now().isoformat(timespec="seconds")
  paths = report.write_hf_only(out, cfg.out_dir, cfg.threads)
  _log(f"wrote {', '.join(paths)}")
  return out


def run_bench(cfg: BenchConfig) -> dict:
  """Runs every measurement; writes and returns bench.json's content."""
  if cfg.hf_only:
    return run_hf_only(cfg)
  load_start = timing.load_average()
  pair = load_pair(cfg.drafter_dir, cfg.verifier_dir)
  prompts = task_prompts(pair.tokenizer, cfg.task, cfg.num_prompts,
                         MAX_PROMPT_LEN)
  _log(f"{len(prompts)} prompts, bucket {prompts.bucket}; α sweeps")
  bench = compile_section(pair, prompts, cfg)
  _log("isolated call costs")
  cost_table = measure_costs(pair, prompts, cfg, cfg.gammas)
  ar_costs = cost_table[AR_GAMMA]
  _log("timed decoding passes")
  specs = [runs.ar_spec("verifier", AR_GAMMA), runs.ar_spec("drafter",
                                                            AR_GAMMA)]
  specs += [spec_run(m, g) for m in SPEC_METHODS for g in cfg.gammas]
  results = runs.run_all(pair, prompts, specs, cfg.max_decode_len,
                         cfg.repeats)
  n = len(prompts)
  bench.update(efficiency_section(results, cost_table, ar_costs, n, cfg))
  detail = loop_overheads(results, cost_table, ar_costs, n, cfg)
  bench["loop_overhead_detail"] = detail
  bench["loop_overhead"] = {
      m: max(v for k, v in detail.items() if k.startswith(m + "/"))
      for m in (runs.AR, *SPEC_METHODS)}
  _log("loop-only cost (models that cost nothing)")
  vocab = pair.verifier.vocab_size
  bench["loop_only_us_per_iteration"] = {
      s.name: 1e6 * loop_cost.seconds_per_iteration(
          s, vocab, pair.verifier.eos_id, cfg.max_decode_len,
          calls=LOOP_ONLY_CALLS, repeats=cfg.repeats) for s in specs}
  bench["loop_only_vocab_size"] = vocab
  # Imported here: `python -m benchmarks.roofline` imports this package.
  from benchmarks import roofline  # pylint: disable=g-import-not-at-top
  bench["dispatch_us_per_op"] = 1e6 * roofline.dispatch_seconds()
  bench["host_overhead_ms_per_call"] = MS * runs.host_overhead(
      pair, prompts, specs[0], cfg.max_decode_len, cfg.repeats)
  bench["step_costs_ms"] = {
      str(g): {k: MS * v for k, v in dataclasses.asdict(c).items()}
      for g, c in cost_table.items()}
  bench["runs"] = {name: {
      "seconds_per_pass": list(r.passes.samples),
      "ms_per_token": MS * r.seconds_per_token, "stats": r.stats}
                   for name, r in results.items()}
  bench.update(_hf_keys(pair, prompts, results, cfg))
  load_end = timing.load_average()
  bench.update(_memory_keys(pair, prompts, cfg))
  bench["device"] = device_info(load_start, load_end)
  bench["device"]["xla_cpu_threads"] = cfg.threads
  bench["config"] = dataclasses.asdict(cfg)
  bench["prompts"] = {"task": cfg.task, "num": n, "bucket": prompts.bucket,
                      "mean_length": float(prompts.lengths.mean())}
  bench["timestamp"] = datetime.datetime.now().isoformat(timespec="seconds")
  bench["targets"] = report.check_targets(bench)
  paths = report.write(bench, cfg.out_dir)
  _log(f"wrote {', '.join(paths)}")
  return bench


def _hf_keys(pair, prompts, results, cfg) -> dict:
  if not cfg.hf:
    return {"hf_speedup_autoregressive": None, "hf_speedup_speculative": None,
            "hf_outputs_identical": None, "hf_detail": None}
  _log("Hugging Face side by side")
  detail = hf_section(pair, prompts, results, cfg)
  return {"hf_speedup_autoregressive": detail["autoregressive"]["speedup"],
          "hf_speedup_speculative": detail["speculative"]["speedup"],
          "hf_outputs_identical": all(
              detail[k]["identity"]["identical"]
              for k in ("autoregressive", "speculative")),
          "hf_detail": detail}


def _memory_keys(pair, prompts, cfg) -> dict:
  _log("memory")
  kv = {name: costs.kv_cache_bytes(model, prompts.bucket)
        for name, model in (("drafter", pair.drafter),
                            ("verifier", pair.verifier))}
  rss = memory.experiment_rss(cfg.rss_gin_file, cfg.rss_overrides,
                              pair.drafter_dir, pair.verifier_dir)
  own = memory.self_peak_rss_mb()
  if rss is None:
    what = "this bench process (the experiment run was skipped or failed)"
    return {"kv_cache": kv, "peak_rss_mb": own,
            "peak_rss_detail": {"what": what, "bench_process_mb": own}}
  what = "reduced default experiment: " + " ".join(rss.command[1:])
  return {"kv_cache": kv, "peak_rss_mb": rss.peak_rss_mb,
          "peak_rss_detail": {"what": what, "seconds": rss.seconds,
                              "returncode": rss.returncode,
                              "bench_process_mb": own}}
