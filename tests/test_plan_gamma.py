"""benchmarks.plan_gamma: the speed-up formula and a small measured plan."""

import json

import pytest

from benchmarks import plan_gamma


def test_expected_speedup_by_hand():
  # α = 0.5, γ = 2: 1 + 0.5 + 0.25 = 1.75 tokens per iteration; cost
  # 2 · 0.1 + 1.2 = 1.4 verifier steps.
  assert plan_gamma.expected_speedup(0.5, 2, 0.1, 1.2) == pytest.approx(1.25)
  # A free drafter and a block that costs one step: the expected tokens.
  assert plan_gamma.expected_speedup(0.0, 3, 0.0, 1.0) == 1.0
  with pytest.raises(ValueError, match="acceptance 1.0"):
    plan_gamma.expected_speedup(1.0, 1, 0.1, 1.0)


def test_a_small_plan_and_its_errors(tmp_path, capsys):
  result = plan_gamma.main([
      "--verifier", "multi30k_t5_large", "--drafter",
      "size=multi30k_t5_small", "--max_gamma", "2", "--calls", "3",
      "--prompt_len", "8", "--max_decode_len", "8", "--acceptance", "0.5",
      "--out", str(tmp_path)])
  row = result["drafters"][0]
  assert row["c"] > 0 and set(row["speedup"]["0.5"]) == {"1", "2"}
  assert row["best_gamma"]["0.5"] in ("1", "2")
  b1 = result["block_ratio"]["1"]
  assert row["speedup"]["0.5"]["1"] == pytest.approx(
      1.5 / (row["c"] + b1))
  saved = json.loads((tmp_path / "plan_gamma_multi30k_t5_large.json")
                     .read_text())
  assert saved["block_ratio"] == result["block_ratio"]
  assert "best γ" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="size=NAME or subset"):
    plan_gamma.main(["--verifier", "multi30k_t5_large", "--drafter", "x=1"])
  with pytest.raises(SystemExit, match="needs a Gemma verifier"):
    plan_gamma.main(["--verifier", "multi30k_t5_large", "--drafter",
                     "subset=64,d_model=32,layers=1"])
  with pytest.raises(SystemExit, match="subset 0 is not in"):
    plan_gamma.main(["--verifier", "multi30k_gemma_large", "--drafter",
                     "subset=0,d_model=32,layers=1"])


def test_a_subset_drafter_is_built_with_its_subset_head():
  from harness.models import subset_vocab
  from harness.runner import pairs
  vconfig = pairs.size_config("multi30k_gemma_large")
  config, subset = plan_gamma._drafter_config(  # pylint: disable=protected-access
      "subset=64,d_model=32,layers=1", vconfig)
  model = plan_gamma._model(config, subset)  # pylint: disable=protected-access
  assert model.vocab_size == vconfig.vocab_size
  assert len(subset_vocab.output_ids(model)) in (64, 65)  # EOS added


def test_loop_speedup_without_bookkeeping_is_the_plain_formula():
  t_p = {1: 2.0, 2: 2.4, 3: 2.6}
  free = {"ar": 0.0, "1": 0.0, "2": 0.0}
  for gamma in (1, 2):
    assert plan_gamma.loop_speedup(0.5, gamma, 0.2, t_p, free) == (
        pytest.approx(plan_gamma.expected_speedup(
            0.5, gamma, 0.2 / 2.0, t_p[gamma + 1] / 2.0)))
  # By hand, γ = 1, α = 0.5: 1.5 tokens × (2 + 0.1) / (0.2 + 2.4 + 0.4).
  costly = {"ar": 0.1, "1": 0.4, "2": 0.5}
  assert plan_gamma.loop_speedup(0.5, 1, 0.2, t_p, costly) == (
      pytest.approx(1.5 * 2.1 / 3.0))


def test_a_plan_with_the_loops_cost(tmp_path):
  result = plan_gamma.main([
      "--verifier", "multi30k_gemma_large", "--drafter",
      "size=multi30k_gemma_small", "--max_gamma", "1", "--calls", "2",
      "--prompt_len", "8", "--max_decode_len", "6", "--acceptance", "0.5",
      "--loop", "--out", str(tmp_path)])
  loop = result["loop_us_per_iteration"]
  assert set(loop) == {"ar", "1"} and min(loop.values()) > 0
  row = result["drafters"][0]
  t_p = {int(k): v / 1e3 for k, v in result["t_p_ms"].items()}
  assert row["speedup_loop"]["0.5"]["1"] == pytest.approx(
      plan_gamma.loop_speedup(0.5, 1, row["t_q_ms"] / 1e3, t_p,
                              {k: v / 1e6 for k, v in loop.items()}))
  assert "S_loop(γ=1)" in (tmp_path / "plan_gamma_multi30k_gemma_large.md"
                           ).read_text()
