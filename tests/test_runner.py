"""Runner: cells, rates, cost model, store, and a small sweep end to end.

The end-to-end tests run the tiny random T5 pair of ``experiments/smoke.gin``
with one method; compiled programs go to a per-session persistent cache so
the SIGKILL test's subprocesses do not recompile them.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from harness import decoding
from harness.__main__ import main
from harness.metrics import sandbox
from harness.runner import calibration as cal
from harness.runner import cells as cells_lib
from harness.runner import config as cfg
from harness.runner import execute
from harness.results import schema
from harness.results import store as store_lib
from harness.runner import summary as summary_lib
from harness.testing import sweeps

REPO = sweeps.REPO
SMOKE = sweeps.SMOKE_GIN
FAST = list(sweeps.FAST_FLAGS)
TIMING_KEYS = ("times_s", "modeled_s", "ref_times_s", "ref_modeled_s")


def _pair():
  return cfg.ModelPair(name="tiny", drafter="tiny_t5",
                       verifier="tiny_t5_large", kind=cfg.PairKind.RANDOM)


def _experiment(**kw):
  base = dict(name="exp", pair=_pair(),
              tasks=(cfg.TaskRun(task="multi30k_ende", num_examples=4),),
              methods=(cfg.MethodGrid("spec_decode_lossy", (0.0, 0.5)),
                       cfg.MethodGrid("spec_cascade_opt",
                                      (-math.inf, 0.0, math.inf))),
              gammas=(3, 5), temperatures=(0.0, 1.0))
  base.update(kw)
  return cfg.Experiment(**base)


# --- Cells -------------------------------------------------------------------


def test_cells_order_ids_and_references():
  cells = cells_lib.build_cells(_experiment())
  ids = [c.cell_id for c in cells]
  assert len(ids) == len(set(ids))
  # 2 temperatures × (2 references + 2 γ × (2 + 3) α).
  assert len(cells) == 2 * (2 + 2 * 5)
  assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyzTP0123456789_.-")
             for i in ids)
  assert ids == [c.cell_id for c in cells_lib.build_cells(_experiment())]
  first = cells[:2]
  assert [c.role for c in first] == [schema.Role.REFERENCE_LARGE,
                                     schema.Role.REFERENCE_SMALL]
  assert "__a-inf__" in " ".join(ids) and "__ainf__" in " ".join(ids)
  method = next(c for c in cells if c.role is schema.Role.METHOD)
  assert cells_lib.reference_for(method).cell_id == first[0].cell_id


def test_cell_id_changes_with_any_config_field():
  base = cells_lib.build_cells(_experiment())[5]
  other = cells_lib.build_cells(_experiment(seed=1))[5]
  assert base.cell_id.rsplit("__", 1)[0] == other.cell_id.rsplit("__", 1)[0]
  assert base.cell_id != other.cell_id


def test_shards_partition_the_cells():
  cells = cells_lib.build_cells(_experiment())
  shards = [cells_lib.Shard(i, 3).select(cells, paired=True)
            for i in range(3)]
  ids = [c.cell_id for shard in shards for c in shard]
  assert sorted(ids) == sorted(c.cell_id for c in cells)
  with pytest.raises(cells_lib.EmptyShardError):  # 2 whole groups.
    cells_lib.Shard(0, 3).select(cells, paired=False)
  with pytest.raises(ValueError, match="0 ≤ i < N"):
    cells_lib.Shard.parse("3/3")


def test_only_keeps_matching_cells_and_their_references():
  cells = cells_lib.build_cells(_experiment())
  chosen = cells_lib.select(cells, ("*spec_cascade_opt__g3_T0_*__a0__*",))
  roles = [c.role for c in chosen]
  assert roles == [schema.Role.REFERENCE_LARGE, schema.Role.REFERENCE_SMALL,
                   schema.Role.METHOD]
  assert chosen[0].temperature == 0.0


def test_config_rejects_alpha_outside_range_and_bad_types():
  with pytest.raises(cfg.FieldError, match="alphas"):
    cfg.MethodGrid("spec_cascade_token", (1.5,))
  with pytest.raises(cfg.FieldError, match="expected an integer"):
    cfg.build(cfg.TaskRun, {"task": "xsum", "num_examples": "3"})
  grid = cfg.build(cfg.MethodGrid, {"method": "spec_cascade_opt",
                                    "alphas": ["-inf", 0, "inf"]})
  assert grid.alphas == (-math.inf, 0.0, math.inf)


# --- Rates and the cost model -------------------------------------------------


def test_leviathan_speedup_formula():
  # a = 0.8, γ = 5, c = 0.1: (1 - 0.8**6) / (0.2 * 1.5).
  assert cal.leviathan_speedup(0.8, 5, 0.1) == pytest.approx(
      (1 - 0.8 ** 6) / (0.2 * 1.5))
  assert cal.leviathan_speedup(1.0, 5, 0.0) == pytest.approx(6.0)
  assert cal.leviathan_speedup(0.0, 3, 0.0) == pytest.approx(1.0)


def test_modeled_seconds_interpolates_widths():
  calib = {"c_q": 1.0, "c_p": {"1": 10.0, "4": 40.0}, "num_calls": 1,
           "pair": "p"}
  assert cal.verifier_cost(calib["c_p"], 2.5) == pytest.approx(25.0)
  assert cal.verifier_cost(calib["c_p"], 9) == pytest.approx(40.0)
  stats = {"drafter_steps": 6, "verifier_calls": 2, "verifier_positions": 5}
  assert cal.modeled_seconds(stats, calib) == pytest.approx(6 + 2 * 25.0)


def test_prompt_bucket_pads_short_prompts_and_keeps_old_cell_ids():
  run = cfg.TaskRun(task="multi30k_ende", num_examples=4, prompt_bucket=40)
  assert [run.bucket(n) for n in (1, 12, 40, 41, 70)] == [40, 40, 40, 64, 128]
  default = cfg.TaskRun(task="multi30k_ende", num_examples=4)
  assert [default.bucket(n) for n in (1, 12, 40)] == [8, 16, 64]
  for bad in (0, -8, 2.5, True, "40"):
    with pytest.raises(cfg.FieldError, match="prompt_bucket"):
      cfg.TaskRun(task="multi30k_ende", num_examples=4, prompt_bucket=bad)
  # Unset, the config (so every existing cell id) is what it was before the
  # field existed; set, it is part of the id and of the reference key.
  old = cells_lib.build_cells(_experiment(tasks=(default,)))[5]
  new = cells_lib.build_cells(_experiment(tasks=(run,)))[5]
  assert "prompt_bucket" not in old.to_json()
  assert new.to_json()["prompt_bucket"] == 40
  assert old.cell_id != new.cell_id
  assert old.reference_key != new.reference_key


def test_compile_totals_count_from_the_runs_start():
  from harness.runner import runner  # pylint: disable=g-import-not-at-top
  start = runner.compile_totals()
  assert runner.compile_totals(since=start) == {"programs": 0, "seconds": 0.0}
  fake = {"programs": start["programs"] - 3, "seconds": start["seconds"] - 2}
  delta = runner.compile_totals(since=fake)
  assert delta["programs"] == 3 and delta["seconds"] == pytest.approx(2.0)


def test_calibration_times_calls_inside_one_program():
  """The loop really makes its calls (XLA neither hoists nor drops them)."""
  from harness.runner import pairs  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from harness import models  # pylint: disable=g-import-not-at-top
  verifier = models.random_t5(jax.random.key(0),
                              pairs.size_config("tiny_t5_large"),
                              jax.numpy.float32)
  prompt = np.arange(2, 12, dtype=np.int32)
  cache = cal._cache(verifier, 4, prompt, 8, bucket=16)
  tokens = jax.numpy.full((1, 4), 2, jax.numpy.int32)
  never = jax.numpy.asarray(jax.numpy.inf)

  def seconds(calls):
    best = math.inf
    for _ in range(3):
      start = time.perf_counter()
      jax.block_until_ready(cal._score_loop(verifier, tokens, cache,
                                            jax.numpy.asarray(calls), never))
      best = min(best, time.perf_counter() - start)
    return best

  seconds(1)  # compile
  assert seconds(400) > 20 * seconds(1)
  per_call = cal.time_score(verifier, 4, 6, prompt, 8, bucket=16)
  assert 0 < per_call < seconds(400) / 100
  with pytest.raises(ValueError, match="exceeds the bucket"):
    cal._cache(verifier, 4, prompt, 8, bucket=8)


def _record(stats, times=(1.0,)):
  return {"stats": stats, "times_s": list(times), "modeled_s": 1.0,
          "targets": ["x"], "prediction": "x"}


def test_cell_stats_definitions():
  cell = {"gamma": 2, "method": "spec_decode"}
  s1 = dict(num_tokens=6, drafts_accepted=3, drafts_evaluated=4,
            verifier_calls=2, rejections=1, deferrals=1,
            accepted_per_position=[2, 1], evaluated_per_position=[2, 2])
  s2 = dict(s1, num_tokens=4, drafts_accepted=1, drafts_evaluated=2,
            verifier_calls=2, rejections=2, deferrals=0,
            accepted_per_position=[1, 0], evaluated_per_position=[2, 0])
  costs = {"c_q": 1.0, "c_p": {"1": 2.0, "3": 4.0}}
  stats = summary_lib.cell_stats(cell, [_record(s1), _record(s2)], costs, 0.5)
  assert stats["acceptance_rate"] == pytest.approx(4 / 6)
  assert stats["mean_accepted_length"] == pytest.approx(10 / 4)
  assert stats["rejection_rate"] == pytest.approx(3 / 4)
  assert stats["deferral_rate"] == pytest.approx(1 / 10)
  assert stats["acceptance_per_position"] == [0.75, 0.5]
  assert stats["measured_speedup"] == pytest.approx(2.0)
  assert stats["predicted_speedup"] == pytest.approx(
      cal.leviathan_speedup(4 / 6, 2, 1.0 / 4.0))


def test_cell_stats_autoregressive_rates_are_null():
  cell = {"gamma": None, "method": "autoregressive"}
  s = dict(num_tokens=5, drafts_accepted=0, drafts_evaluated=0,
           verifier_calls=5, rejections=0, deferrals=0)
  stats = summary_lib.cell_stats(cell, [_record(s)], {"c_q": 1, "c_p": {}},
                                 None)
  assert stats["acceptance_rate"] is None and stats["deferral_rate"] is None
  assert stats["predicted_speedup"] is None and stats["num_tokens"] == 5


def test_quality_without_references_is_null_with_note():
  records = [_record({}) | {"targets": [], "prediction": "a"}]
  values, note = summary_lib.quality("cnn_dailymail", records)
  assert values["rouge2"] is None and "no references" in note


def test_atomic_write_leaves_no_temp_files(tmp_path):
  path = tmp_path / "a" / "x.json"
  store_lib.atomic_write_text(str(path), "one")
  store_lib.atomic_write_text(str(path), "two")
  assert path.read_text() == "two"
  assert os.listdir(tmp_path / "a") == ["x.json"]


# --- End to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
  """A persistent compilation cache shared with the subprocess tests."""
  path = str(tmp_path_factory.mktemp("jax_cache"))
  settings = {"jax_compilation_cache_dir": path,
              "jax_persistent_cache_min_compile_time_secs": 0,
              "jax_disable_most_optimizations": True}
  old = {k: jax.config.values[k] for k in settings}
  for key, value in settings.items():
    jax.config.update(key, value)
  yield path
  for key, value in old.items():
    jax.config.update(key, value)


def _sweep(results, *extra):
  return main(["sweep", "--gin_file", SMOKE, "--no_progress",
               f"--gin.RESULTS_DIR='{results}'", *FAST, *extra])


def _load_dir(exp_dir):
  """{cell_id: (records without timings, summary without timings)}."""
  out = {}
  cells_dir = os.path.join(exp_dir, "cells")
  for name in sorted(os.listdir(cells_dir)):
    if not name.endswith(".json"):
      continue
    cell_id = name[:-len(".json")]
    with open(os.path.join(cells_dir, cell_id + ".jsonl")) as f:
      records = [json.loads(line) for line in f]
    for r in records:
      for key in TIMING_KEYS:
        r.pop(key, None)
    summary = store_lib.read_json(os.path.join(cells_dir, name))
    out[cell_id] = (records, summary["quality"], summary["stats"]["totals"],
                    summary["stats"]["acceptance_rate"])
  return out


@pytest.fixture(scope="module")
def uninterrupted(jax_cache, tmp_path_factory):
  results = str(tmp_path_factory.mktemp("results"))
  assert _sweep(results) == 0
  return os.path.join(results, "smoke")


def test_sweep_writes_schema_and_provenance(uninterrupted):
  manifest = store_lib.read_json(os.path.join(uninterrupted, "manifest.json"))
  assert len(manifest["cell_ids"]) == 4
  assert manifest["calibration"]["c_q"] > 0
  # What this run compiled (programs other tests compiled are reused; the
  # exact count is checked by the slow prompt-bucket sweep).
  assert manifest["compile"]["programs"] >= 0
  assert manifest["compile"]["seconds"] >= 0
  assert manifest["latency_protocol"] == "paired"
  assert "Experiment.name" in manifest["provenance"]["gin_config"]
  for cell_id in manifest["cell_ids"]:
    summary = store_lib.read_json(
        os.path.join(uninterrupted, "cells", cell_id + ".json"))
    assert set(summary) == set(schema.CellSummary.__annotations__)
    assert set(summary["stats"]) == set(schema.CellStats.__annotations__)
    assert summary["provenance"]["versions"]["jax"] == jax.__version__
    assert summary["provenance"]["device"]["platform"] == "cpu"
    assert summary["provenance"]["sandbox"]["launcher"] in sandbox.LAUNCHERS
    assert summary["latency"]["num_timed_examples"] == 2
    assert len(summary["latency"]["per_trial_mean_s"]) == 2
    assert summary["relative_latency"] > 0
    records = store_lib.ResultsStore(
        os.path.dirname(uninterrupted), "smoke").read_records(cell_id)
    assert [r["index"] for r in records] == [0, 1, 2]
    assert [len(r["times_s"]) for r in records] == [2, 2, 1]
    assert all(r["num_tokens"] == len(r["tokens"]) <= 6 for r in records)


def test_sweep_reference_and_lossless_cells(uninterrupted):
  loaded = _load_dir(uninterrupted)
  by_method = {cid.split("__")[1] + cid.split("__")[-2]: v
               for cid, v in loaded.items()}
  large = next(v for k, v in by_method.items() if "verifier" in k)
  lossless = next(v for k, v in by_method.items() if k.endswith("a0"))
  summaries = {cid: store_lib.read_json(
      os.path.join(uninterrupted, "cells", cid + ".json")) for cid in loaded}
  ref = next(s for s in summaries.values()
             if s["cell"]["role"] == "reference_large")
  assert ref["relative_latency"] == pytest.approx(1.0)
  assert large[3] is None  # No acceptance rate for autoregressive.
  assert 0 <= lossless[3] <= 1
  assert lossless[2]["drafts_evaluated"] > 0


def test_rerun_skips_completed_cells(uninterrupted, capsys):
  before = {n: os.path.getmtime(os.path.join(uninterrupted, "cells", n))
            for n in os.listdir(os.path.join(uninterrupted, "cells"))}
  assert _sweep(os.path.dirname(uninterrupted)) == 0
  assert "4 already done" in capsys.readouterr().out
  after = {n: os.path.getmtime(os.path.join(uninterrupted, "cells", n))
           for n in os.listdir(os.path.join(uninterrupted, "cells"))}
  assert before == after


def _subprocess_sweep(results, cache):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  return subprocess.Popen(
      [sys.executable, "-m", "harness", "sweep", "--gin_file", SMOKE,
       "--no_progress", f"--gin.RESULTS_DIR='{results}'", *FAST],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow  # default-suite budget (make test-slow); ~30 s; make faults also kills and resumes sweeps
def test_sigkill_mid_sweep_then_resume_matches(uninterrupted, jax_cache,
                                               tmp_path):
  cells_dir = tmp_path / "smoke" / "cells"
  proc = _subprocess_sweep(str(tmp_path), jax_cache)
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:
    done = list(cells_dir.glob("*.json")) if cells_dir.exists() else []
    if len(done) >= 2:
      break
    time.sleep(0.02)
  assert proc.poll() is None, "the sweep ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert len(list(cells_dir.glob("*.json"))) < 4
  resumed = _subprocess_sweep(str(tmp_path), jax_cache)
  out, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err.decode()[-2000:]
  assert b"already done" in out
  assert _load_dir(str(tmp_path / "smoke")) == _load_dir(uninterrupted)
  assert not [p for p in cells_dir.iterdir() if p.name.startswith(".tmp")]


def test_a_run_of_some_cells_keeps_the_whole_sweep_in_the_manifest(
    jax_cache, uninterrupted, tmp_path):
  # Filling a results directory a part at a time (`--only`) must not shrink
  # the manifest to the last part's cells.
  full = store_lib.read_json(os.path.join(uninterrupted, "manifest.json"))
  exp_dir = tmp_path / "smoke"
  assert _sweep(str(tmp_path), "--only", "*autoregressive*") == 0
  manifest = store_lib.read_json(str(exp_dir / "manifest.json"))
  assert manifest["cell_ids"] == full["cell_ids"]
  assert len(list((exp_dir / "cells").glob("*.json"))) == 2  # references
  assert list(manifest["drift"]) == [c for c in full["cell_ids"]
                                     if "autoregressive-verifier" in c]
  # An earlier session's calibration of another pair is kept.
  manifest["calibrations"]["earlier_pair"] = manifest["calibration"]
  store_lib.atomic_write_text(str(exp_dir / "manifest.json"),
                              store_lib.to_json(manifest))
  method = next(c for c in full["cell_ids"] if "__a0__" in c)
  assert _sweep(str(tmp_path), "--only", method) == 0
  again = store_lib.read_json(str(exp_dir / "manifest.json"))
  assert len(list((exp_dir / "cells").glob("*.json"))) == 3
  assert again["cell_ids"] == full["cell_ids"]
  assert set(again["calibrations"]) == {"earlier_pair",
                                        *full["calibrations"]}


def test_report_merges_shards(jax_cache, uninterrupted, tmp_path, capsys):
  for i in range(2):
    assert _sweep(str(tmp_path), "--shard", f"{i}/2") == 0
  exp_dir = tmp_path / "smoke"
  shard_files = sorted(os.listdir(exp_dir / "manifests"))
  # Under the paired protocol a unit is one cell (cells.units): smoke's
  # single group is split over both shards (tests/test_multihost.py deals
  # whole groups of the unpaired protocol).
  assert shard_files == ["shard-000-of-002.json", "shard-001-of-002.json"]
  assert main(["report", "--results", str(exp_dir)]) == 0
  manifest = store_lib.read_json(str(exp_dir / "manifest.json"))
  full = store_lib.read_json(os.path.join(uninterrupted, "manifest.json"))
  assert manifest["cell_ids"] == full["cell_ids"]
  assert _load_dir(str(exp_dir)) == _load_dir(uninterrupted)
  summaries = store_lib.ResultsStore(str(tmp_path), "smoke").summaries()
  assert all(s["relative_latency"] is not None for s in summaries)


# --- Paired timing ------------------------------------------------------------


class _FakeClock:
  """A clock that only the decodes below advance (no real time)."""

  def __init__(self):
    self.now = 0.0
    self.slow = False

  def __call__(self) -> float:
    return self.now


# Simulated seconds per decode by role; the later half of a group (its method
# cells) runs SLOWDOWN times slower, as if a load started mid-group.
_COSTS = {"reference_large": 1.0, "reference_small": 0.3, "method": 0.5}
SLOWDOWN = 3.0


def _slowdown_sweep(monkeypatch, results, protocol):
  """Sweeps FAST under a fake clock; returns {cell id: summary}."""
  clock = _FakeClock()
  real = execute.program_for

  def program_for(cell, loaded):
    clock.slow |= cell.role is schema.Role.METHOD
    program = real(cell, loaded)

    def timed(prompt, rng):
      out = program(prompt, rng)
      clock.now += _COSTS[cell.role.value] * (SLOWDOWN if clock.slow else 1)
      return out

    return timed

  monkeypatch.setattr(execute, "clock", clock)
  monkeypatch.setattr(execute, "program_for", program_for)
  assert _sweep(results, f"--gin.LATENCY_PROTOCOL='{protocol}'") == 0
  store = store_lib.ResultsStore(results, "smoke")
  return {s["cell_id"]: s for s in store.summaries()}, store


@pytest.mark.slow
def test_task_prompt_bucket_compiles_one_program_per_family(
    uninterrupted, tmp_path):
  """A task bucket pads every prompt to one program per loop family, and
  the outputs are the power-of-two buckets' ones token for token."""
  decoding.clear_cache()  # the manifest counts what this run compiled
  assert _sweep(str(tmp_path), "--gin.multi30k_ende/TaskRun.prompt_bucket=72"
                ) == 0
  exp_dir = os.path.join(str(tmp_path), "smoke")
  manifest = store_lib.read_json(os.path.join(exp_dir, "manifest.json"))
  # Two families (autoregressive, the speculative loop), one bucket each
  # (the smoke prompts have 40–64 tokens: bucket 64 without the setting).
  assert manifest["compile"]["programs"] == 2
  before = _load_dir(uninterrupted)
  after = _load_dir(exp_dir)
  assert len(after) == len(before) == 4
  for cell_id, (records, *_) in after.items():
    summary = store_lib.read_json(
        os.path.join(exp_dir, "cells", cell_id + ".json"))
    assert summary["cell"]["prompt_bucket"] == 72
    twin = next(v for k, v in before.items()
                if k.rsplit("__", 1)[0] == cell_id.rsplit("__", 1)[0])
    assert [r["tokens"] for r in records] == [r["tokens"] for r in twin[0]]


def test_paired_ratio_survives_a_mid_group_slowdown(jax_cache, monkeypatch,
                                                    tmp_path):
  paired, store = _slowdown_sweep(monkeypatch, str(tmp_path / "paired"),
                                  "paired")
  unpaired, _ = _slowdown_sweep(monkeypatch, str(tmp_path / "unpaired"),
                                "unpaired")
  assert paired.keys() == unpaired.keys()
  methods = [c for c, s in paired.items()
             if s["cell"]["role"] == schema.Role.METHOD.value]
  assert len(methods) == 2
  for cell_id in methods:
    # Paired: method and reference slow down together; the ratio stays.
    assert paired[cell_id]["relative_latency"] == pytest.approx(0.5)
    assert paired[cell_id]["latency"]["protocol"] == "paired"
    # Unpaired (the old protocol): the slowdown lands in the ratio.
    assert unpaired[cell_id]["relative_latency"] == pytest.approx(
        0.5 * SLOWDOWN)
    records = store.read_records(cell_id)
    assert [r["ref_times_s"] for r in records[:2]] == [[3.0, 3.0]] * 2
    # The order alternates per example and per trial (ABBA).
    assert [r["ref_first"] for r in records[:2]] == [[True, False],
                                                     [False, True]]
    assert "ref_times_s" not in records[2]  # Outside the latency subset.
    host = paired[cell_id]["provenance"]["host"]
    assert set(host) == {"before", "after"}
    assert len(host["before"]["loadavg"]) == 3
    assert paired[cell_id]["cost_model"]["prompt_len"] == (
        sorted(r["num_prompt_tokens"] for r in records[:2])[0])
  small = next(s for s in paired.values()
               if s["cell"]["role"] == schema.Role.REFERENCE_SMALL.value)
  assert small["relative_latency"] == pytest.approx(0.3)
  manifest = store_lib.read_json(os.path.join(store.dir, "manifest.json"))
  (drift,) = manifest["drift"].values()
  assert drift["start_s"] == 1.0 and drift["end_s"] == SLOWDOWN
  assert drift["ratio"] == pytest.approx(SLOWDOWN)


# --- Integrity of finished cells ---------------------------------------------


def test_truncated_cell_is_refused_by_merge_and_redone_on_resume(
    uninterrupted, tmp_path, capsys):
  import shutil  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "smoke"
  shutil.copytree(uninterrupted, copy)
  store = store_lib.ResultsStore(str(tmp_path), "smoke")
  cell_id = sorted(s["cell_id"] for s in store.summaries())[-1]
  path = store.records_path(cell_id)
  with open(path) as f:
    lines = f.readlines()
  with open(path, "w") as f:  # Truncated after the cell finished.
    f.writelines(lines[:-1])
  assert store.check_cell(cell_id) is not None
  manifest_before = (copy / "manifest.json").read_text()
  assert main(["report", "--results", str(copy)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and cell_id in err[0] and "damaged" in err[0]
  assert (copy / "manifest.json").read_text() == manifest_before
  assert _sweep(str(tmp_path)) == 0
  out = capsys.readouterr().out
  assert f"redoing cell {cell_id}" in out and "3 already done" in out
  assert store.check_cell(cell_id) is None
  assert _load_dir(str(copy)) == _load_dir(uninterrupted)
