"""Placement: the layout of least estimated wall time, its arithmetic by
hand, the described cluster, and replicas that decode as one device does
(8 fake CPU devices, in a subprocess)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from harness.__main__ import main
from harness.models import chips
from harness.models import layout as layout_lib
from harness.runner import estimate, placement, topologies
from harness.testing import estimates

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "experiments", "smoke.gin")
T5_LARGE = ["--gin.ModelPair.drafter='t5_v1_1_small'",
            "--gin.ModelPair.verifier='t5_v1_1_large'",
            "--gin.ModelPair.dtype='bfloat16'"]
BIG = ["--gin.multi30k_ende/TaskRun.num_examples=1000",
       "--gin.NUM_LATENCY_EXAMPLES=None", "--gin.MAX_DECODE_LEN=64"]
GEMMA_27B = ["--gin.ModelPair.drafter='gemma2_2b'",
             "--gin.ModelPair.verifier='gemma2_27b'",
             "--gin.ModelPair.dtype='bfloat16'"]


def _dry(capsys, tmp_path, *extra):
  code = main(["sweep", "--gin_file", SMOKE, "--dry_run",
               f"--gin.RESULTS_DIR='{tmp_path}/results'", *extra])
  return code, capsys.readouterr().out


def _chosen(out):
  line = next(l for l in out.splitlines()
              if l.startswith("  tiny_random_t5: model_parallel"))
  return line.split("): ")[1]


CHIP = estimates.CHIP
_fp = estimates.footprint


def test_wall_time_deals_longest_first_to_the_least_loaded_stream():
  # 5 → A, 4 → B, 3 → B (7), 3 → A (8), 2 → B (9), 1 → A (9): 9 s.
  assert placement.wall_seconds([5, 4, 3, 3, 2, 1], 2) == 9
  assert placement.wall_seconds([5, 4, None, 1], 1) == 10  # unknown left out
  assert placement.wall_seconds([5, 4, 3], 8) == 5


def test_cell_seconds_by_hand(tmp_path):
  from harness.runner import cells as cells_lib  # pylint: disable=g-import-not-at-top
  from harness.runner import execute, gin_config  # pylint: disable=g-import-not-at-top
  exp, _ = gin_config.parse([SMOKE], [f"RESULTS_DIR='{tmp_path}'"], [])
  cells = cells_lib.build_cells(exp)
  pair = cells[0].pair
  chip = chips.Chip("m", "Measured", 16, 1e9, 1e9, 1, step_overhead_s=50e-6)
  # Verifier: step 50 + 1.3 µs, prefill 50 + 40 µs (test_estimate's
  # figures). Drafter half as big: 600 B + 100 B KV → 50 + 0.7 µs step
  # (FLOPs 2 × 500 × 600 / 1000 = 0.6 µs), prefill 50 + 20 µs.
  prints = {pair: {"verifier": _fp(),
                   "drafter": _fp(num_params=500, weight_bytes=1000.0,
                                  step_weight_bytes=600.0,
                                  prefill_flops=20_000.0)}}
  got = estimate.cell_seconds(cells, chip, prints, "paired")
  for cell, seconds in zip(cells, got):
    length = estimate.output_len(cell)  # multi30k_ende: 8 (its limit)
    small = cell.role.value == "reference_small"
    own = (70e-6 + length * 50.7e-6) if small else (
        90e-6 + length * 51.3e-6)
    ref = estimate.reference_decodes(cell, "paired") * (
        90e-6 + length * 51.3e-6)
    assert seconds == pytest.approx(execute.num_decodes(cell) * own + ref)
  assert length == 8
  # Two streams: the busiest gets at least half, at most half + one cell.
  two = placement.wall_seconds(got, 2)
  assert sum(got) / 2 <= two <= sum(got) / 2 + max(got)


def test_candidates_of_a_four_chip_host():
  got = [(l.model_parallel, l.drafter, l.replicas)
         for l in placement.candidates(4)]
  assert got == [(1, "replicated", 4), (1, "own chip", 2),
                 (2, "replicated", 2), (2, "sharded", 2), (2, "own chip", 1),
                 (4, "replicated", 1), (4, "sharded", 1)]
  # Explicit settings restrict the candidates to them.
  got = [(l.model_parallel, l.drafter, l.replicas)
         for l in placement.candidates(8, 2, "sharded")]
  assert got == [(2, "sharded", 4)]


def test_choose_skips_what_does_not_fit_or_run():
  lay = lambda m, d="replicated": layout_lib.fixed(m, 4, d)
  options = [placement.Option(lay(1), 40.0, fits=False, seconds=1.0),
             placement.Option(lay(1, "own chip"), 8.0, True, seconds=2.0),
             placement.Option(lay(2), 8.0, True, seconds=4.0),
             placement.Option(lay(2, "sharded"), 7.0, True, seconds=3.0)]
  assert placement.choose(options) is options[3]
  assert placement.choose(options[:2]) is None


def test_several_replicas_for_t5_on_8_devices(capsys, tmp_path):
  code, out = _dry(capsys, tmp_path, *T5_LARGE, *BIG, "--simulate_devices",
                   "8xH100")
  assert code == 0, out
  assert _chosen(out) == "8 replicas × 1 chip, drafter replicated"
  # Each alternative priced, the wide one slower.
  wide = next(l for l in out.splitlines()
              if "1 replica × 8 chips, drafter sharded:" in l)
  assert " h, drafter step " in wide
  wall = next(l for l in out.splitlines() if l.startswith("wall time:"))
  assert "tiny_random_t5 8;" in wall


def test_a_27b_verifier_is_split_where_it_must_be(capsys, tmp_path):
  # 4 × 32 GiB (v4-8): only the 4-way split fits, with the drafter split
  # too (its step 0.14 of the verifier's against 0.37 replicated).
  code, out = _dry(capsys, tmp_path, *GEMMA_27B, "--simulate_devices",
                   "v4-8")
  assert code == 0, out
  assert _chosen(out) == "1 replica × 4 chips, drafter sharded"
  # 8 × 80 GiB in float32 (101 GiB of verifier; 2-way does not leave the
  # margin): a wide split, and the other 4 chips a second replica.
  code, out = _dry(capsys, tmp_path, *GEMMA_27B[:2], "--simulate_devices",
                   "8xH100")
  assert code == 0, out
  assert _chosen(out) == "2 replicas × 4 chips, drafter sharded"
  # In bfloat16 it fits one 80 GiB chip: eight independent replicas beat
  # one 8-way split (two all-reduces per layer at batch 1).
  code, out = _dry(capsys, tmp_path, *GEMMA_27B, *BIG,
                   "--simulate_devices", "8xH100")
  hours = {l.split(":")[0].strip(" *"): float(l.split(": ")[1].split(" h")[0])
           for l in out.splitlines() if l.startswith("    ") and " h" in l}
  assert _chosen(out) == "8 replicas × 1 chip, drafter replicated"
  assert hours["8 replicas × 1 chip, drafter replicated"] < hours[
      "1 replica × 8 chips, drafter sharded"]


def test_explicit_settings_win(capsys, tmp_path):
  code, out = _dry(capsys, tmp_path, *T5_LARGE, "--simulate_devices",
                   "8xH100", "--gin.ModelPair.model_parallel=4",
                   "--gin.ModelPair.drafter_placement='sharded'")
  assert code == 0, out
  assert _chosen(out) == "2 replicas × 4 chips, drafter sharded"
  assert "verifier (1/4) + " in out and "drafter (1/4)" in out


def test_a_described_cluster_is_priced(capsys, tmp_path):
  topo = topologies.parse("8xv4-8")
  assert (topo.num_devices, topo.num_hosts, topo.devices_per_host) == (
      32, 8, 4)
  assert topologies.parse("2x8xH100").num_hosts == 2
  _, one = _dry(capsys, tmp_path, *T5_LARGE, *BIG, "--simulate_devices",
                "v4-8")
  _, eight = _dry(capsys, tmp_path, *T5_LARGE, *BIG, "--simulate_devices",
                  "8xv4-8")
  hours = lambda out: float(next(
      l for l in out.splitlines() if l.startswith("wall time:")).split(
          "wall time: ")[1].split(" h")[0])
  # 8 cells: one host's 4 chips take 4 one-chip replicas (every cell but
  # two on a stream of its own); 8 hosts give each cell a whole host.
  assert "tiny_random_t5 4;" in one
  assert "tiny_random_t5 8;" in eight and "on 8 hosts" in eight
  assert hours(eight) < hours(one)


def test_unknown_drafter_is_named_not_a_flat_10_ms(capsys, tmp_path):
  code, out = _dry(capsys, tmp_path, "--gin.ModelPair.kind='checkpoint'",
                   f"--gin.ModelPair.drafter='{tmp_path}/nowhere'",
                   "--gin.ModelPair.verifier='t5_v1_1_large'",
                   "--gin.ModelPair.verifier_size='t5_v1_1_large'",
                   "--simulate_devices", "1xH200")
  line = next(l for l in out.splitlines() if "decodes to run" in l)
  assert "drafter unknown + L × unknown ms" in line
  assumed = next(l for l in out.splitlines() if l.startswith("assumed:"))
  assert ("not estimated (size unknown: no checkpoint and no declared "
          "size; or no layout fits): tiny_random_t5 drafter, so 1 cells are "
          "left out of the total") in assumed
  # The declared size is used when the gin gives one.
  _, out = _dry(capsys, tmp_path, "--gin.ModelPair.kind='checkpoint'",
                f"--gin.ModelPair.drafter='{tmp_path}/nowhere'",
                "--gin.ModelPair.drafter_size='t5_v1_1_small'",
                "--gin.ModelPair.verifier='t5_v1_1_large'",
                "--gin.ModelPair.verifier_size='t5_v1_1_large'",
                "--simulate_devices", "1xH200")
  assert "not estimated" not in out and "unknown ms" not in out


_REPLICAS = textwrap.dedent("""
    import dataclasses, json, sys
    import jax, numpy as np
    from harness import decoding
    from harness.models import configs, layout, random_gemma, random_t5

    assert jax.device_count() == 8, jax.devices()
    cases = {
        "t5": (random_t5, configs.TINY_T5, configs.TINY_T5),
        "gemma": (random_gemma, dataclasses.replace(
            configs.TINY_GEMMA2, num_heads=8, num_kv_heads=4),
                  configs.TINY_GEMMA2),
    }
    kw = dict(gamma=3, temperature=0.0, max_decode_len=12,
              rng=jax.random.key(0))
    prompt = np.array([3, 4, 5, 6, 7])
    for name, layouts in json.loads(sys.argv[1]).items():
      build, large, small = cases[name]
      verifier = build(jax.random.key(0), large)
      drafter = build(jax.random.key(1), small)
      want = decoding.decode("spec_decode", drafter, verifier, prompt, **kw)
      for m, place in layouts:
        lay = layout.fixed(m, 8, place)
        groups = layout.replica_devices(lay, jax.devices())
        assert len(groups) == 8 // m
        for devices in (groups[0], groups[-1]):
          v, (d,) = layout.place(verifier, [drafter], lay, devices)
          assert v.params is not None
          leaf = jax.tree.leaves(v.params)[0]
          assert set(leaf.devices()) == set(devices), (leaf.devices(), devices)
          got = decoding.decode("spec_decode", d, v, prompt, **kw)
          np.testing.assert_array_equal(got.tokens, want.tokens)
        print(name, m, place, len(groups), "replicas ok")
""")


# One layout per family in the default run (T5 on one chip per replica,
# Gemma 2 split over two with the drafter sharded); the other two in the slow
# run.
@pytest.mark.parametrize("layouts", [
    {"t5": [[1, "replicated"]], "gemma": [[2, "sharded"]]},
    pytest.param({"t5": [[2, "sharded"]], "gemma": [[4, "replicated"]]},
                 marks=pytest.mark.slow),
], ids=["default", "more"])
def test_every_replica_decodes_the_single_device_tokens(layouts):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, "-c", _REPLICAS,
                         json.dumps(layouts)], env=env,
                        capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count("replicas ok") == 2, proc.stdout
