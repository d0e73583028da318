"""The dry run as a gate: one test per fault, every fault listed at once."""

import json
import os

from harness.__main__ import main
from harness.models import chips
from harness.runner import topologies
from harness.runner import preflight

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "experiments", "smoke.gin")
WMT = ["--gin.include 'gin/tasks/wmt14_ende.gin'",
       "--gin.TASKS=[@wmt14_ende/TaskRun()]",
       "--gin.wmt14_ende/TaskRun.num_examples=4",
       "--gin.NUM_LATENCY_EXAMPLES=None"]


def _dry(capsys, tmp_path, *extra):
  code = main(["sweep", "--gin_file", SMOKE, "--dry_run",
               f"--gin.RESULTS_DIR='{tmp_path}/results'", *extra])
  out = capsys.readouterr().out
  problems = [l for l in out.splitlines() if l.startswith("problem (")]
  return code, out, problems


def _checkpoint(path, vocab_size, weights=True):
  os.makedirs(path)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"model_type": "t5", "vocab_size": vocab_size, "d_model": 32,
               "d_kv": 8, "d_ff": 64, "num_heads": 4, "num_layers": 2,
               "feed_forward_proj": "gated-gelu"}, f)
  if weights:
    open(os.path.join(path, "model.safetensors"), "wb").close()
  return str(path)


def _pair(drafter, verifier):
  return ["--gin.ModelPair.kind='checkpoint'",
          f"--gin.ModelPair.drafter='{drafter}'",
          f"--gin.ModelPair.verifier='{verifier}'"]


def test_clean_smoke_passes(capsys, tmp_path):
  code, out, problems = _dry(capsys, tmp_path)
  assert code == 0 and not problems and "no problems found" in out
  assert "per chip weights" in out


def test_missing_data_dir(capsys, tmp_path):
  missing = tmp_path / "no_tfds"
  code, _, problems = _dry(capsys, tmp_path, *WMT,
                           "--gin.DATA_SOURCE='tfds'",
                           f"--gin.DATA_DIR='{missing}'")
  assert code == preflight.PROBLEMS_EXIT
  assert problems == [f"problem (data): wmt14_ende (source tfds): DATA_DIR "
                      f"{missing} does not exist (prepare it with `tfds "
                      "build`, docs/running.md)"]


def test_unprepared_tfds_dataset(capsys, tmp_path):
  (tmp_path / "tfds").mkdir()
  code, _, problems = _dry(capsys, tmp_path, *WMT,
                           "--gin.DATA_SOURCE='tfds'",
                           f"--gin.DATA_DIR='{tmp_path / 'tfds'}'")
  assert code == preflight.PROBLEMS_EXIT and len(problems) == 1
  assert "wmt14_translate/de-en is not prepared" in problems[0]


def test_prepared_tfds_dataset_size_is_read(tmp_path):
  info = tmp_path / "wmt14_translate" / "de-en" / "1.0.0"
  info.mkdir(parents=True)
  (info / "dataset_info.json").write_text(json.dumps({"splits": [
      {"name": "validation", "shardLengths": ["1000", "2000"]}]}))
  from harness import tasks  # pylint: disable=g-import-not-at-top
  assert tasks.available_examples("wmt14_ende", "tfds", str(tmp_path)) == 3000


def test_missing_checkpoint(capsys, tmp_path):
  good = _checkpoint(tmp_path / "small", 128)
  code, _, problems = _dry(capsys, tmp_path,
                           *_pair(good, tmp_path / "nowhere"))
  assert code == preflight.PROBLEMS_EXIT
  assert problems == [f"problem (checkpoint): verifier checkpoint "
                      f"{tmp_path / 'nowhere'}: no such directory"]


def test_checkpoint_without_weights(capsys, tmp_path):
  small = _checkpoint(tmp_path / "small", 128)
  large = _checkpoint(tmp_path / "large", 128, weights=False)
  code, _, problems = _dry(capsys, tmp_path, *_pair(small, large))
  assert code == preflight.PROBLEMS_EXIT and len(problems) == 1
  assert "verifier checkpoint" in problems[0] and "no weights file" in (
      problems[0])


def test_t5x_directory_is_read_not_refused_for_lacking_config(capsys,
                                                              tmp_path):
  small = _checkpoint(tmp_path / "small", 128)
  t5x_dir = tmp_path / "t5x"
  t5x_dir.mkdir()
  (t5x_dir / "checkpoint").write_bytes(b"not msgpack")
  code, _, problems = _dry(capsys, tmp_path, *_pair(small, t5x_dir))
  assert code == preflight.PROBLEMS_EXIT and len(problems) == 1
  assert problems[0].startswith(f"problem (checkpoint): verifier checkpoint "
                                f"{t5x_dir}: ")
  assert "no config.json" not in problems[0]
  assert "not a T5X checkpoint" in problems[0]  # read by the T5X reader


def test_vocabulary_mismatch(capsys, tmp_path):
  small = _checkpoint(tmp_path / "small", 128)
  large = _checkpoint(tmp_path / "large", 256)
  code, _, problems = _dry(capsys, tmp_path, *_pair(small, large))
  assert code == preflight.PROBLEMS_EXIT
  assert problems == ["problem (vocabulary): pair tiny_random_t5: drafter "
                      "vocab_size 128 != verifier vocab_size 256"]


def test_model_parallel_8_on_one_device(capsys, tmp_path):
  code, _, problems = _dry(capsys, tmp_path, "--gin.ModelPair.model_parallel=8",
                           "--simulate_devices", "1xH100")
  assert code == preflight.PROBLEMS_EXIT and len(problems) == 1
  assert problems[0].startswith("problem (devices): pair tiny_random_t5: "
                                "model_parallel=8 needs a multiple of 8 "
                                "devices; simulated 1xH100: 1 ×")


def test_too_large_sample_refused_or_capped(capsys, tmp_path):
  big = "--gin.multi30k_ende/TaskRun.num_examples=5000"
  code, _, problems = _dry(capsys, tmp_path, big)
  assert code == preflight.PROBLEMS_EXIT
  assert problems == ["problem (sample size): multi30k_ende (source "
                      "offline): num_examples=5000 but the source holds 1014 "
                      "(lower it, or set SAMPLE_POLICY=\"cap\")"]
  code, out, problems = _dry(capsys, tmp_path, big,
                             "--gin.SAMPLE_POLICY='cap'")
  assert code == 0 and not problems
  assert ("warning: multi30k_ende (source offline): num_examples=5000 but "
          "the source holds 1014: capped to 1014") in out
  # 1,014 examples + (trials − 1) × timed examples of smoke.gin.
  assert "  1016 decodes  multi30k_ende__" in out


def test_memory_overflow_per_chip(capsys, tmp_path):
  code, out, problems = _dry(
      capsys, tmp_path, "--gin.ModelPair.verifier='t5_v1_1_xxl'",
      "--gin.ModelPair.drafter='t5_v1_1_small'",
      "--gin.ModelPair.model_parallel=1", "--simulate_devices", "v5e-8")
  assert code == preflight.PROBLEMS_EXIT and len(problems) == 1
  assert problems[0].startswith("problem (memory): pair tiny_random_t5 × "
                                "multi30k_ende: needs ")
  assert "but a TPU v5e holds 16.00 GiB" in problems[0]
  # Split 8 ways the XXL verifier fits a v5e chip.
  code, _, problems = _dry(
      capsys, tmp_path, "--gin.ModelPair.verifier='t5_v1_1_xxl'",
      "--gin.ModelPair.drafter='t5_v1_1_small'",
      "--gin.ModelPair.model_parallel=8", "--simulate_devices", "v5e-8")
  assert code == 0 and not problems


GEMMA_2B_27B = ["--gin.ModelPair.drafter='gemma2_2b'",
                "--gin.ModelPair.verifier='gemma2_27b'",
                "--gin.ModelPair.dtype='bfloat16'"]


def test_auto_model_parallel_is_chosen_and_printed(capsys, tmp_path):
  # Published Gemma 2 shapes: 27B (50.7 GiB) + 2B in bfloat16.
  code, out, problems = _dry(capsys, tmp_path, *GEMMA_2B_27B,
                             "--simulate_devices", "v4-8")
  assert code == 0 and not problems, problems
  assert ('  tiny_random_t5: model_parallel="auto" chose 4 (of 4 devices '
          "per host)") in out
  assert "verifier (1/4)" in out
  # One host of a v4-16 has 4 chips: the same choice.
  _, out, _ = _dry(capsys, tmp_path, *GEMMA_2B_27B, "--simulate_devices",
                   "v4-16")
  assert 'chose 4 (of 4 devices per host)' in out


def test_auto_model_parallel_refuses_on_one_small_chip(capsys, tmp_path):
  code, _, problems = _dry(capsys, tmp_path, *GEMMA_2B_27B,
                           "--simulate_devices", "v5e-1")
  assert code == preflight.PROBLEMS_EXIT and len(problems) == 1
  assert problems[0].startswith(
      'problem (devices): pair tiny_random_t5: model_parallel="auto": '
      "parameters do not fit: 55.6 GiB in all")
  assert "1 chips × 16.0 GiB" in problems[0]


def test_every_problem_listed_at_once(capsys, tmp_path):
  small = _checkpoint(tmp_path / "small", 128)
  code, _, problems = _dry(
      capsys, tmp_path, *_pair(small, tmp_path / "nowhere"),
      "--gin.ModelPair.model_parallel=8",
      "--gin.multi30k_ende/TaskRun.num_examples=5000",
      "--simulate_devices", "v4-8")
  kinds = sorted(p.split(")")[0] for p in problems)
  assert code == preflight.PROBLEMS_EXIT
  assert kinds == ["problem (checkpoint", "problem (devices",
                   "problem (sample size"]


def test_topology_names():
  v4 = topologies.parse("v4-8")
  assert (v4.num_devices, v4.num_hosts, v4.kind.memory_bytes) == (
      4, 1, 32 * topologies.GIB)
  assert (topologies.parse("v4-16").num_devices,
          topologies.parse("v4-16").num_hosts) == (8, 2)
  assert (topologies.parse("8xH100").num_devices,
          topologies.parse("8xH100").num_hosts) == (8, 1)
  assert topologies.parse("v5e-8").num_hosts == 1


def test_topologies_read_the_one_chip_table():
  for name, chip in (("v4-8", "v4"), ("v5e-8", "v5e"), ("v5p-8", "v5p"),
                     ("8xH100", "H100"), ("1xH200", "H200"),
                     ("4xA100", "A100-80GB"), ("4xA100-40GB", "A100-40GB")):
    assert topologies.parse(name).kind is chips.chip_named(chip)
  assert topologies.parse("4xA100-40GB").kind.memory_bytes == 40 * chips.GIB
  assert topologies.parse("cpu").kind.name == topologies.CPU


def test_estimate_uses_chip_bandwidth_and_split(capsys, tmp_path):
  def hours(*extra):
    _, out, _ = _dry(capsys, tmp_path,
                     "--gin.ModelPair.verifier='t5_v1_1_large'",
                     "--gin.ModelPair.drafter='t5_v1_1_small'",
                     "--gin.multi30k_ende/TaskRun.num_examples=1000",
                     "--gin.NUM_LATENCY_EXAMPLES=None", *extra)
    line = next(l for l in out.splitlines() if "decodes to run" in l)
    return float(line.split("estimated ")[1].split(" s")[0])
  v4 = hours("--simulate_devices", "v4-8")
  h100 = hours("--simulate_devices", "8xH100")
  split = hours("--simulate_devices", "8xH100",
                "--gin.ModelPair.model_parallel=4")
  assert h100 < v4 and split < h100


def test_real_run_refuses_oversized_sample_before_any_cell(capsys, tmp_path):
  code = main(["sweep", "--gin_file", SMOKE, "--no_progress",
               f"--gin.RESULTS_DIR='{tmp_path}/results'",
               "--gin.multi30k_ende/TaskRun.num_examples=5000"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1 and len(err) == 1
  assert err[0].startswith("error: sample size: multi30k_ende (source "
                           "offline): num_examples=5000 but the source holds "
                           "1014")
  assert not (tmp_path / "results").exists()


def test_remote_data_dir_is_a_warning_not_a_problem(capsys, tmp_path):
  code, out, problems = _dry(capsys, tmp_path, *WMT,
                             "--gin.DATA_SOURCE='tfds'",
                             "--gin.DATA_DIR='gs://bucket/tfds'")
  assert code == 0 and not problems
  assert "warning: wmt14_ende (source tfds): DATA_DIR gs://bucket/tfds is " \
         "remote" in out


def test_multi_host_topology_estimates_the_busiest_host(capsys, tmp_path):
  _, out, _ = _dry(capsys, tmp_path, "--gin.TEMPERATURES=[0.0, 1.0]",
                   "--simulate_devices", "v4-16")
  assert "over 2 hosts (--distributed" in out


def test_model_parallel_beyond_one_host(capsys, tmp_path):
  code, _, problems = _dry(capsys, tmp_path, "--gin.ModelPair.model_parallel=8",
                           "--simulate_devices", "v4-16")
  assert code == preflight.PROBLEMS_EXIT and len(problems) == 1
  assert "model_parallel=8 exceeds the 4 devices of one host" in problems[0]


def test_estimate_counts_the_paired_protocols_reference_decodes(
    capsys, tmp_path):
  def decodes_and_seconds(*extra):
    _, out, _ = _dry(capsys, tmp_path, *extra)
    line = next(l for l in out.splitlines() if "decodes to run" in l)
    return (int(line.split(" decodes to run")[0].split(", ")[-1]),
            float(line.split("estimated ")[1].split(" s")[0]))
  large = ("--gin.ModelPair.verifier='t5_v1_1_large'",
           "--gin.ModelPair.drafter='t5_v1_1_small'",
           "--gin.multi30k_ende/TaskRun.num_examples=1000")
  paired = decodes_and_seconds(*large)
  unpaired = decodes_and_seconds(*large, "--gin.LATENCY_PROTOCOL='unpaired'")
  assert paired[0] > unpaired[0] and paired[1] > unpaired[1]
