"""Tasks: offline examples, sampling, shots, data errors, CLI listing."""

import json
import shutil

import pytest

from harness import __main__ as cli
from harness import tasks
from harness.tasks import datasets
from harness.tasks import prompts
from harness.tasks import registry

@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_every_offline_task_yields_examples(name):
  examples = tasks.load_examples(name, num_examples=5, seed=0)
  assert len(examples) == 5
  assert len({e.id for e in examples}) == 5
  for e in examples:
    assert e.inputs.strip()
    if name != "gemma_squad_v2":  # SQuAD 2.0 may be unanswerable: ().
      assert e.targets and all(isinstance(t, str) for t in e.targets)


def test_spec_limits_follow_the_paper():
  limits = {n: (s.max_input_len, s.max_output_len)
            for n, s in tasks.TASKS.items()}
  assert limits["wmt14_ende"] == (80, 80)
  assert limits["xsum"] == (1024, 64)
  assert limits["cnn_dailymail"] == (2048, 128)
  outputs = {n: s.max_output_len for n, s in tasks.TASKS.items()}
  assert outputs["gemma_wmt14_ende_5shot"] == 80
  assert outputs["gemma_cnn_dailymail"] == 128
  assert outputs["gemma_gsm8k_8shot"] == outputs["gemma_mbpp_3shot"] == 320
  for qa in ("gemma_squad_v2", "gemma_webquestions_1shot",
             "gemma_nq_open_1shot", "gemma_triviaqa"):
    assert outputs[qa] == 5
  assert tasks.get_task("wmt14_ende").headline_metric == "bleu"
  assert tasks.get_task("xsum").headline_metric == "rouge2"
  assert tasks.get_task("gemma_mbpp_3shot").headline_metric == "pass@1"
  shots = {n: s.num_shots for n, s in tasks.TASKS.items()}
  assert (shots["gemma_wmt14_ende_5shot"], shots["gemma_gsm8k_8shot"],
          shots["gemma_webquestions_1shot"], shots["gemma_nq_open_1shot"]) == (
              5, 8, 1, 1)


def test_unknown_task_lists_known_names():
  with pytest.raises(KeyError, match="known tasks:.*wmt14_ende"):
    tasks.get_task("wmt15")


def test_sampling_is_deterministic_prefix_stable_and_order_independent():
  first = [e.id for e in tasks.load_examples("gemma_nq_open_1shot",
                                             num_examples=20, seed=3)]
  tasks.load_examples("gemma_triviaqa", num_examples=7, seed=3)  # Interleave.
  again = [e.id for e in tasks.load_examples("gemma_nq_open_1shot",
                                             num_examples=50, seed=3)]
  assert again[:20] == first
  other = [e.id for e in tasks.load_examples("gemma_nq_open_1shot",
                                             num_examples=20, seed=4)]
  assert other != first


def test_full_split_sizes():
  assert len(tasks.load_examples("wmt14_ende")) == 3000  # newstest2013.
  assert len(tasks.load_examples("wmt14_ende", split="test")) == 3003
  assert len(tasks.load_examples("gemma_mbpp_3shot")) == 500  # ids 11-510.
  assert len(tasks.load_examples("gemma_gsm8k_8shot")) == 1319
  assert len(tasks.load_examples("multi30k_ende", split="test")) == 1000
  assert len(tasks.load_examples("gemma_triviaqa")) == 2999  # 1 held out.
  assert len(tasks.load_examples("cnn_dailymail")) == 500


def test_offline_cnn_dailymail_has_highlights_and_rouge2():
  from harness.runner import summary  # pylint: disable=g-import-not-at-top
  examples = tasks.load_examples("cnn_dailymail", num_examples=3, seed=0)
  assert all(e.extra["has_reference"] and e.targets[0].count("\n") >= 1
             for e in examples)
  records = [{"targets": list(e.targets), "prediction": e.targets[0],
              "inputs": e.inputs} for e in examples]
  values, _ = summary.quality("cnn_dailymail", records)
  assert values["rouge2"] is not None and values["rouge2"] > 0.99


def test_tfds_shot_pool_is_a_bounded_seeded_slice(monkeypatch):
  reads = []
  monkeypatch.setattr(datasets, "tfds_split_size", lambda *a: 4_508_785)
  monkeypatch.setattr(datasets, "tfds_records", lambda name, dataset, split,
                      data_dir: reads.append(split) or tuple(
                          {"id": str(i), "src": f"s{i}", "tgt": f"t{i}"}
                          for i in range(tasks.SHOT_POOL_SIZE)))
  spec = tasks.get_task("gemma_wmt14_ende_5shot")
  for seed in (0, 0, 1):
    pool = registry.shot_pool(spec, tasks.Source.TFDS, "/d", seed)
    assert len(pool) == tasks.SHOT_POOL_SIZE
  starts = [int(r.split("[")[1].split(":")[0]) for r in reads]
  assert all(r == f"train[{s}:{s + tasks.SHOT_POOL_SIZE}]"
             for r, s in zip(reads, starts))
  assert starts[0] == starts[1] != starts[2]
  assert all(0 <= s <= 4_508_785 - tasks.SHOT_POOL_SIZE for s in starts)


def test_gsm8k_prompt_has_eight_solved_exemplars():
  example = tasks.load_examples("gemma_gsm8k_8shot", num_examples=1)[0]
  assert example.inputs.count("Question:") == 9
  assert example.inputs.count("The answer is") == 8
  assert "<<" not in example.inputs and "####" not in example.inputs
  assert example.inputs.endswith("\nAnswer:")
  assert example.targets[0] == prompts.gsm8k_final(example.extra["solution"])


def test_mbpp_shots_come_from_prompt_split_and_extras_have_tests():
  examples = tasks.load_examples("gemma_mbpp_3shot", num_examples=3)
  prompt_texts = [r["text"] for r in datasets.offline_records("mbpp", "prompt")]
  used = [t for t in prompt_texts if t in examples[0].inputs]
  assert len(used) == 3
  assert examples[0].inputs.count("[DONE]") == 3
  for e in examples:
    assert 11 <= int(e.id) <= 510
    assert len(e.extra["test_list"]) == 3


def test_exemplar_is_never_an_evaluated_example():
  spec = tasks.get_task("gemma_triviaqa")  # Shots from the evaluated file.
  pool = datasets.offline_records("triviaqa", "validation")
  shot = tasks.select_shots(spec, pool, seed=0)[0]
  examples = tasks.load_examples("gemma_triviaqa", seed=0)
  assert all(e.id != shot["id"] for e in examples)
  assert all(e.inputs.startswith(f"Q: {shot['question']}\nA:")
             for e in examples[:5])


def test_squad_unanswerable_flag_and_postprocess():
  examples = tasks.load_examples("gemma_squad_v2", num_examples=50, seed=0)
  impossible = [e for e in examples if e.extra["is_impossible"]]
  assert impossible and all(e.targets == () for e in impossible)
  assert tasks.postprocess("gemma_squad_v2", " Unanswerable.\nQ: x") == ""
  assert tasks.postprocess("gemma_nq_open_1shot", " Paris\n\nQ: next") == "Paris"
  assert tasks.postprocess("gemma_mbpp_3shot",
                           "def f():\n  return 1\n[DONE]\nmore") == (
                               "def f():\n  return 1")


def _copy_data(tmp_path, monkeypatch, subdir):
  root = tmp_path / "data"
  shutil.copytree(datasets.data_root() / subdir, root / subdir)
  monkeypatch.setenv(tasks.DATA_DIR_ENV, str(root))
  return root / subdir


def test_malformed_line_names_file_and_line(tmp_path, monkeypatch):
  folder = _copy_data(tmp_path, monkeypatch, "gsm8k")
  lines = (folder / "test.jsonl").read_text().splitlines()
  lines[6] = lines[6][:-5]  # Truncated JSON on line 7.
  (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
  with pytest.raises(tasks.DataError, match=r"test\.jsonl:7: invalid JSON"):
    tasks.load_examples("gemma_gsm8k_8shot")


def test_missing_field_names_file_line_and_field(tmp_path, monkeypatch):
  folder = _copy_data(tmp_path, monkeypatch, "nq_open")
  path = folder / "NQ-open.dev.jsonl"
  lines = path.read_text().splitlines()
  record = json.loads(lines[2])
  del record["answer"]
  lines[2] = json.dumps(record)
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(tasks.DataError,
                     match=r"NQ-open\.dev\.jsonl:3: missing field 'answer'"):
    tasks.load_examples("gemma_nq_open_1shot")


def test_missing_file_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv(tasks.DATA_DIR_ENV, str(tmp_path))
  with pytest.raises(tasks.DataError, match="missing data file"):
    tasks.load_examples("multi30k_ende")


def test_cli_lists_every_task_and_metric(capsys):
  assert cli.main(["list"]) == 0
  out = capsys.readouterr().out
  for name in tasks.TASKS:
    assert name in out
  for name in ("bleu", "rouge2", "pass@1", "exact_match"):
    assert name in out
