"""TFDS-backed tasks on ``tfds.testing.mock_data`` (no network, no data)."""


import pytest

from harness import tasks

tfds = pytest.importorskip("tensorflow_datasets")

_TFDS_TASKS = sorted(n for n, s in tasks.TASKS.items() if s.tfds is not None)
_MOCK_EXAMPLES = 10  # ≥ the largest shot count (8, GSM8K).


@pytest.mark.parametrize("name", _TFDS_TASKS)
def test_tfds_task_smoke(name):
  spec = tasks.get_task(name)
  with tfds.testing.mock_data(num_examples=_MOCK_EXAMPLES):
    examples = tasks.load_examples(name, source="tfds")
  # Mock splits hold identical random records, so exemplars equal to an
  # evaluated record are held out; at least one example must remain.
  assert examples
  for e in examples:
    assert e.inputs.strip() and e.id
  if spec.num_shots:
    assert examples[0].inputs.count("\n\n") >= spec.num_shots


def test_mbpp_has_no_tfds_builder_and_uses_bundled_file():
  assert tasks.get_task("gemma_mbpp_3shot").tfds is None
  examples = tasks.load_examples("gemma_mbpp_3shot", source="tfds",
                                 num_examples=2)
  assert len(examples) == 2 and examples[0].extra["test_list"]


def test_seqio_tasks_offline_and_mock_tfds(tmp_path):
  spm = pytest.importorskip("sentencepiece")
  text = tmp_path / "text.txt"
  text.write_text("\n".join(
      e.inputs + "\n" + e.targets[0]
      for e in tasks.load_examples("multi30k_ende", num_examples=300)))
  spm.SentencePieceTrainer.train(
      input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=200,
      minloglevel=2)
  from harness.tasks import seqio_tasks  # pylint: disable=g-import-not-at-top
  model = str(tmp_path / "sp.model")
  offline = seqio_tasks.register_tasks(model, num_examples=3)
  assert set(offline) == set(tasks.TASKS)
  ds = offline["gemma_triviaqa"].get_dataset(
      sequence_length=None, split="validation", shuffle=False,
      try_in_mem_cache=False)
  rows = list(ds.as_numpy_iterator())
  eos = offline["gemma_triviaqa"].output_features["targets"].vocabulary.eos_id
  assert len(rows) == 3 and all(r["targets"][-1] == eos for r in rows)
  assert b"\x1f" in b"".join(r["references"] for r in rows)
  online = seqio_tasks.register_tasks(model, source="tfds")
  with tfds.testing.mock_data(num_examples=_MOCK_EXAMPLES):
    ds = online["wmt14_ende"].get_dataset(
        sequence_length=None, split="validation", shuffle=False,
        try_in_mem_cache=False)
    assert len(list(ds.as_numpy_iterator())) == _MOCK_EXAMPLES
