"""make bench: the library writes a complete bench.json (no timing checks)."""

import json
import os
import sys

import jax
import numpy as np
import pytest

from benchmarks import BenchConfig, analysis, hf, memory, report, run_bench
from benchmarks.pair import pad_prompts
from harness.models import Tokenizer, configs, random_t5, save_pretrained
from harness.testing import tokenizers

TINY_GAMMA = 2


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
  root = tmp_path_factory.mktemp("pair")
  tok = Tokenizer(tokenizers.train_tiny_sentencepiece(root / "spm.model"))
  dirs = []
  for seed, name in ((1, "small"), (2, "large")):
    model = random_t5(jax.random.key(seed), configs.TINY_T5,
                      tokenizer_id=tok.id)
    save_pretrained(model, root / name, tok)
    dirs.append(str(root / name))
  return dirs


@pytest.fixture(scope="module")
def bench(tiny_pair, tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  cfg = BenchConfig(drafter_dir=tiny_pair[0], verifier_dir=tiny_pair[1],
                    num_prompts=2, max_decode_len=4, gammas=(TINY_GAMMA,),
                    hf_gamma=TINY_GAMMA, repeats=1, step_calls=2,
                    hf_repeats=1, rss_gin_file=None, out_dir=str(out))
  return run_bench(cfg), out


@pytest.mark.slow
def test_bench_json_has_the_required_keys(bench):
  result, out = bench
  with open(out / "bench.json") as f:
    written = json.load(f)
  for key in report.REQUIRED_KEYS:
    assert key in written
  assert (out / "bench.md").read_text().startswith("# make bench")
  for method in ("spec_decode", "spec_cascade_token"):
    assert set(written["efficiency"][method]) == {str(TINY_GAMMA)}
    assert set(written["efficiency_exact"][method]) == {str(TINY_GAMMA)}
    assert written["compiles_per_program"][method][str(TINY_GAMMA)] <= 1
  assert set(written["loop_overhead"]) == {
      "autoregressive", "spec_decode", "spec_cascade_token"}
  assert isinstance(written["hf_outputs_identical"], bool)
  assert written["peak_rss_mb"] > 0
  assert written["kv_cache"]["verifier"]["bytes_per_token"] == (
      # self-attention keys and values: 2 layers x 2 x heads x d_kv x 4 bytes
      2 * 2 * configs.TINY_T5.num_heads * configs.TINY_T5.d_kv * 4)
  assert set(written["targets"]) >= {"efficiency", "loop_overhead"}
  assert result["device"]["backend"] == jax.default_backend()
  assert set(written["loop_only_us_per_iteration"]) == set(written["runs"])
  assert all(v > 0 for v in written["loop_only_us_per_iteration"].values())
  assert "Loop-only cost" in (out / "bench.md").read_text()


@pytest.mark.slow
def test_spec_decode_output_equals_verifier_greedy(bench):
  runs = bench[0]["runs"]
  ar = runs["autoregressive/verifier"]["stats"]["num_tokens"]
  assert runs[f"spec_decode/g{TINY_GAMMA}"]["stats"]["num_tokens"] == ar


def test_compare_outputs_compares_tokens():
  same = hf.compare_outputs([(5, 6, 1), (7,)], [[5, 6, 1], [7]])
  assert same.identical and same.mismatches == ()
  differ = hf.compare_outputs([(5, 6, 1), (7,)], [(5, 6, 1), (8,)])
  assert not differ.identical and differ.mismatches == (1,)
  assert differ.first_mismatch == (1, (7,), (8,))
  shorter = hf.compare_outputs([(5, 6, 1)], [(5, 6)])
  assert not shorter.identical
  with pytest.raises(ValueError):
    hf.compare_outputs([(1,)], [])


def test_null_pair_never_ends_early():
  """The loop-only models decode to the length limit, whatever the method."""
  from harness import decoding
  from benchmarks import loop_cost
  drafter, verifier = loop_cost.null_pair(50, eos_id=1)
  for method, opts in (("autoregressive", {"model": "verifier"}),
                       ("spec_decode", {})):
    out = decoding.decode(method, drafter, verifier, np.arange(1, 5),
                          gamma=3, temperature=1.0, max_decode_len=20, **opts)
    assert int(out.num_tokens) == 20
    assert 1 not in np.asarray(out.tokens).tolist()


def test_predicted_speedup_formula():
  assert analysis.predicted_speedup(0.0, 5, 0.0) == pytest.approx(1.0)
  assert analysis.predicted_speedup(1.0, 3, 0.1) == pytest.approx(4 / 1.3)
  expected = (1 - 0.8 ** 6) / (0.2 * (5 * 0.2 + 1))
  assert analysis.predicted_speedup(0.8, 5, 0.2) == pytest.approx(expected)


def test_exact_cost_model_counts_every_call():
  costs = analysis.Costs(drafter_step=1.0, drafter_first=1.5,
                         verifier_step=4.0, verifier_block=5.0,
                         drafter_prefill=10.0, verifier_prefill=20.0)
  stats = {"iterations": 3, "drafter_steps": 3 * 2 + 1}
  # 2 prompts x 30 + 3 x (1.5 + 1 + 5) + 1 bonus step
  assert analysis.spec_model_seconds(stats, 2, 2, costs) == pytest.approx(
      60 + 22.5 + 1)


def test_targets_are_checked():
  bench = {"efficiency": {"m": {"3": 0.97, "5": 0.9}},
           "loop_overhead": {"a": 1.01}, "hf_outputs_identical": True}
  targets = report.check_targets(bench)
  assert targets["efficiency"]["met"] is False
  assert targets["loop_overhead"]["met"] is True
  assert targets["hf_outputs_identical"]["met"] is True
  assert targets["hf_speedup_speculative"]["met"] is None


def test_pad_prompts_uses_one_bucket():
  prompts = pad_prompts([np.array([3, 1]), np.arange(2, 12)])
  assert prompts.bucket == 16 and prompts.padded.shape == (2, 16)
  np.testing.assert_array_equal(prompts.ids(1), np.arange(2, 12))


def test_peak_rss_of_a_child():
  rss = memory.peak_rss([sys.executable, "-c",
                         "x = bytearray(64 * 2**20); x[::4096] = b'1' * 16384"])
  assert rss.returncode == 0 and rss.peak_rss_mb >= 64


def test_experiment_command_points_at_the_pair():
  cmd = memory.experiment_command("experiments/default.gin", ("A=1",),
                                  "d", "v", "r")
  assert cmd[1:4] == ["-m", "harness", "sweep"]
  assert '--gin.DRAFTER_CHECKPOINT="d"' in cmd and "--gin.A=1" in cmd
  assert os.path.basename(cmd[0]).startswith("python")


def test_hf_only_compares_at_the_configured_threads(tiny_pair, tmp_path):
  """`--hf_only`: ours vs transformers alone, both at cfg.threads."""
  cfg = BenchConfig(drafter_dir=tiny_pair[0], verifier_dir=tiny_pair[1],
                    num_prompts=2, max_decode_len=4, gammas=(TINY_GAMMA,),
                    hf_gamma=TINY_GAMMA, repeats=1, step_calls=2,
                    hf_repeats=1, rss_gin_file=None, out_dir=str(tmp_path),
                    threads=1, hf_threads=1, hf_only=True)
  out = run_bench(cfg)
  assert out["hf_detail"]["threads"] == 1
  assert out["hf_outputs_identical"] is True
  assert out["device"]["xla_cpu_threads"] == 1
  written = json.loads((tmp_path / "hf_threads1.json").read_text())
  assert written["hf_speedup_autoregressive"] > 0
  md = (tmp_path / "hf_threads1.md").read_text()
  assert "1 XLA:CPU thread(s)" in md and "torch" in md
  assert not (tmp_path / "bench.json").exists()
