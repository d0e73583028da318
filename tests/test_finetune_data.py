"""harness.finetune.data: seqio tasks and batches for fine-tuning."""

from __future__ import annotations

import collections
import itertools
import pathlib

import numpy as np
import pytest

pytest.importorskip("seqio")

from harness.finetune import data  # noqa: E402
from harness.tasks.spec import DataError  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
VOCAB = str(ROOT / "checkpoints/multi30k_t5/large/spiece.model")
NEWSTEST = "ft_wmt_newstest_offline"
PACKED = ("encoder_segment_ids", "encoder_positions", "decoder_segment_ids",
          "decoder_positions")
BASE = ("encoder_input_tokens", "decoder_input_tokens",
        "decoder_target_tokens", "decoder_loss_weights")


def _batches(task=NEWSTEST, split="train", n=None, **kw):
  args = dict(vocab_path=VOCAB, lengths={"inputs": 32, "targets": 32},
              batch_size=4, pack=False, seed=0, shuffle=True, repeat=True)
  args.update(kw)
  it = data.make_dataset(task, split, **args)
  return list(itertools.islice(it, n)) if n is not None else list(it)


def _rows(batches, key="encoder_input_tokens"):
  """Non-empty rows as tuples of their non-zero tokens."""
  return [tuple(r[r != 0]) for b in batches for r in b[key] if r.any()]


def check_layout(batch, batch_size, lengths, pack):
  """EncDecFeatureConverter invariants of one batch."""
  names = BASE + (PACKED if pack else ())
  assert sorted(batch) == sorted(names)
  for k, v in batch.items():
    side = "inputs" if k.startswith("encoder") else "targets"
    assert v.dtype == np.int32 and v.shape == (batch_size, lengths[side]), k
  tgt, dec_in = batch["decoder_target_tokens"], batch["decoder_input_tokens"]
  if not pack:
    np.testing.assert_array_equal(dec_in[:, 0], 0)
    np.testing.assert_array_equal(dec_in[:, 1:], tgt[:, :-1])
    np.testing.assert_array_equal(batch["decoder_loss_weights"], tgt > 0)
    return
  for side, tokens in (("encoder", batch["encoder_input_tokens"]),
                       ("decoder", tgt)):
    seg, pos = batch[f"{side}_segment_ids"], batch[f"{side}_positions"]
    np.testing.assert_array_equal(seg > 0, tokens > 0)
    for s_row, p_row in zip(seg, pos):
      assert (np.diff(s_row[s_row > 0]) >= 0).all()  # Segments in order.
      for s in np.unique(s_row[s_row > 0]):  # Positions 0..n-1 per segment.
        np.testing.assert_array_equal(p_row[s_row == s],
                                      np.arange((s_row == s).sum()))
  # Decoder inputs: targets shifted right within each segment.
  seg, pos = batch["decoder_segment_ids"], batch["decoder_positions"]
  starts = (pos == 0) & (seg > 0)
  np.testing.assert_array_equal(dec_in[starts], 0)
  inner = (pos > 0)
  np.testing.assert_array_equal(dec_in[:, 1:][inner[:, 1:]],
                                tgt[:, :-1][inner[:, 1:]])
  np.testing.assert_array_equal(batch["decoder_loss_weights"], tgt > 0)


@pytest.mark.parametrize("pack", [False, True])
def test_newstest_layout(pack):
  lengths = {"inputs": 128, "targets": 128}
  batches = _batches(n=3, pack=pack, lengths=lengths)
  for b in batches:
    check_layout(b, 4, lengths, pack)
  enc = np.concatenate([b["encoder_input_tokens"] for b in batches])
  # Every example ends with EOS (id 1).
  eos_count = (enc == 1).sum(axis=1)
  if pack:
    segments = np.concatenate([b["encoder_segment_ids"] for b in batches])
    np.testing.assert_array_equal(eos_count, segments.max(axis=1))
    # Sentences are ~45 tokens: packing puts several in some 128-token rows.
    assert segments.max() > 1
  else:
    np.testing.assert_array_equal(eos_count, 1)


@pytest.mark.parametrize("pack", [pytest.param(False, marks=pytest.mark.slow),
                                  True])
def test_resume_yields_the_same_batches(pack):
  lengths = {"inputs": 64, "targets": 64}
  full = _batches(n=6, pack=pack, lengths=lengths, seed=7)
  resumed = _batches(n=3, pack=pack, lengths=lengths, seed=7, start_batch=3)
  for a, b in zip(full[3:], resumed):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_seed_determines_the_order():
  a, b = _batches(n=1, seed=1), _batches(n=1, seed=1)
  c = _batches(n=1, seed=2)
  assert _rows(a) == _rows(b)
  assert _rows(a) != _rows(c)


def test_offline_counts_and_final_batch_padding():
  val = _batches(split="validation", shuffle=False, repeat=False,
                 batch_size=256)
  assert len(val) == 12  # ceil(3000 / 256), the last padded with zero rows.
  assert len(_rows(val)) == 3000
  last = val[-1]
  assert last["encoder_input_tokens"].shape == (256, 32)
  assert not last["encoder_input_tokens"][3000 - 11 * 256:].any()
  assert not last["decoder_loss_weights"][3000 - 11 * 256:].any()
  test = _batches(split="test", shuffle=False, repeat=False, batch_size=512)
  assert len(_rows(test)) == 3003


@pytest.mark.slow
def test_offline_train_count():
  train = _batches(split="train", shuffle=False, repeat=False, batch_size=1024)
  assert len(_rows(train)) == 13071  # newstest 2008-2012.


def test_shards_partition_the_split():
  kw = dict(split="validation", shuffle=True, repeat=False, batch_size=512,
            seed=3)
  full = collections.Counter(_rows(_batches(**kw)))
  s0 = _rows(_batches(shard_index=0, num_shards=2, **kw))
  s1 = _rows(_batches(shard_index=1, num_shards=2, **kw))
  assert len(s0) == 1500 and len(s1) == 1500
  assert collections.Counter(s0) + collections.Counter(s1) == full


def test_prefix_is_configurable():
  plain = _batches(n=1, shuffle=False)
  try:
    data.register_finetune_tasks(VOCAB, prefixes={NEWSTEST: "English: "})
    prefixed = _batches(n=1, shuffle=False)
  finally:
    data.register_finetune_tasks(VOCAB)
  import seqio  # pylint: disable=g-import-not-at-top
  vocab = seqio.SentencePieceVocabulary(VOCAB)
  text = vocab.decode(list(_rows(prefixed)[0]))
  assert text.startswith("English: ")
  assert text[len("English: "):] == vocab.decode(list(_rows(plain)[0]))


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "nope"}, "unknown fine-tuning task 'nope'"),
    ({"split": "dev"}, "split: ft_wmt_newstest_offline has splits"),
    ({"lengths": {"inputs": 32}}, "lengths: expected"),
    ({"shard_index": 2, "num_shards": 2}, "shard_index: 2 not in"),
    ({"vocab_path": "/no/such.model"}, "/no/such.model: SentencePiece"),
])
def test_bad_arguments_fail_clearly(kwargs, match):
  args = dict(task=NEWSTEST, split="train", vocab_path=VOCAB,
              lengths={"inputs": 32, "targets": 32}, batch_size=2, pack=False,
              seed=0, shuffle=False, repeat=False)
  args.update(kwargs)
  with pytest.raises(DataError, match=match):
    data.make_dataset(args.pop("task"), args.pop("split"), **args)


# ---------------------------------------------------------------------------
# TFDS tasks under tfds.testing.mock_data (random text, real feature specs).
# ---------------------------------------------------------------------------

MOCK_EXAMPLES = 12
TFDS_TASKS = ("ft_wmt14_ende", "ft_xsum", "ft_cnn_dailymail")


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  """Metadata (splits of one file each) so seqio can list TFDS shards."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp("tfds"))
  for task in data.TASKS.values():
    if task.tfds_name is None:
      continue
    builder = tfds.builder(task.tfds_name, data_dir=root)
    splits = [tfds.core.SplitInfo(
        name=s, shard_lengths=[MOCK_EXAMPLES], num_bytes=0,
        filename_template=tfds.core.ShardedFileTemplate(
            data_dir=builder.data_dir, dataset_name=builder.name, split=s,
            filetype_suffix="tfrecord")) for s in data.SPLITS]
    builder.info.set_splits(tfds.core.SplitDict(splits))
    pathlib.Path(builder.data_dir).mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
  return root


@pytest.fixture
def mock_tfds(tfds_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=tfds_dir,
                              policy=tfds.testing.MockPolicy.USE_FILES):
    yield tfds_dir


@pytest.mark.parametrize("task", TFDS_TASKS)
def test_tfds_task_batches(task, mock_tfds):
  import seqio  # pylint: disable=g-import-not-at-top
  lengths = {"inputs": 128, "targets": 64}
  kw = dict(task=task, split="validation", lengths=lengths, batch_size=2,
            data_dir=mock_tfds, shuffle=False, repeat=False)
  packed = _batches(pack=True, **kw)
  for b in packed:
    check_layout(b, 2, lengths, pack=True)
  segments = np.concatenate([b["encoder_segment_ids"] for b in packed])
  assert segments.max() > 1  # Mock texts are short: rows hold several.
  # Packed rows hold exactly the examples of the unpacked stream.
  plain = _batches(pack=False, **kw)
  assert len(_rows(plain)) == MOCK_EXAMPLES
  vocab = seqio.SentencePieceVocabulary(VOCAB)
  first = vocab.decode(list(_rows(plain)[0]))
  assert first.startswith(data.TASKS[task].prefix.strip())
  packed_examples = collections.Counter(
      tuple(row[seg == s])
      for b in packed
      for row, seg in zip(b["encoder_input_tokens"], b["encoder_segment_ids"])
      for s in np.unique(seg[seg > 0]))
  assert packed_examples == collections.Counter(_rows(plain))


@pytest.mark.parametrize(
    "task", [pytest.param("ft_xsum", marks=pytest.mark.slow), "ft_c4_span"])
def test_tfds_shards_are_disjoint(task, mock_tfds):
  kw = dict(task=task, split="train", batch_size=2, data_dir=mock_tfds,
            shuffle=True, repeat=False, seed=4,
            lengths={"inputs": 64, "targets": 32})
  s0, s1 = (_rows(_batches(shard_index=i, num_shards=2, **kw),
                  "decoder_target_tokens") for i in (0, 1))
  assert s0 and s1 and not set(s0) & set(s1)


def test_tfds_resume(mock_tfds):
  kw = dict(task="ft_cnn_dailymail", split="train", batch_size=2, pack=True,
            data_dir=mock_tfds, shuffle=True, repeat=True, seed=11,
            lengths={"inputs": 256, "targets": 64})
  full = _batches(n=6, **kw)
  resumed = _batches(n=2, start_batch=4, **kw)
  for a, b in zip(full[4:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---------------------------------------------------------------------------
# Saved iterator state: resume without replaying the stream.
# ---------------------------------------------------------------------------

def _take(it, n):
  return list(itertools.islice(it, n))


def _assert_same(want, got):
  assert len(want) == len(got)
  for a, b in zip(want, got):
    assert sorted(a) == sorted(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


_STREAM = dict(vocab_path=VOCAB, lengths={"inputs": 32, "targets": 32},
               batch_size=4, pack=True, seed=5, shuffle=True, repeat=True)


def test_saved_iterator_state_restores_the_stream(tmp_path):
  full = data.make_dataset(NEWSTEST, "train", **_STREAM)
  assert full.resume == "start"
  _take(full, 5)
  full.save(str(tmp_path / "at5"))
  want = _take(full, 3)
  restored = data.make_dataset(NEWSTEST, "train", start_batch=5,
                               iterator_state=str(tmp_path / "at5"),
                               **_STREAM)
  assert (restored.resume, restored.replayed) == ("restored", 0)
  got = _take(restored, 3)
  _assert_same(want, got)
  assert restored.position == 8
  # The state of a resumed iterator (its pipeline replayed 5 batches) is
  # restored too, at its own position.
  restored.save(str(tmp_path / "at8"))
  want = _take(full, 2)
  again = data.make_dataset(NEWSTEST, "train", start_batch=8,
                            iterator_state=str(tmp_path / "at8"), **_STREAM)
  assert again.resume == "restored"
  _assert_same(want, _take(again, 2))


def test_iterator_state_of_another_position_or_stream_is_replayed(tmp_path):
  it = data.make_dataset(NEWSTEST, "train", **_STREAM)
  _take(it, 4)
  it.save(str(tmp_path / "state"))
  want = _take(it, 2)
  # Another position: replayed (and still exact).
  other = data.make_dataset(NEWSTEST, "train", start_batch=3,
                            iterator_state=str(tmp_path / "state"), **_STREAM)
  assert (other.resume, other.replayed) == ("replayed", 3)
  same = data.make_dataset(NEWSTEST, "train", start_batch=4,
                           iterator_state=str(tmp_path / "missing"),
                           **_STREAM)
  assert same.resume == "replayed"
  _assert_same(want, _take(same, 2))
  # Another stream (seed): the state is not used.
  seed = data.make_dataset(NEWSTEST, "train", start_batch=4,
                           iterator_state=str(tmp_path / "state"),
                           **{**_STREAM, "seed": 6})
  assert seed.resume == "replayed"


@pytest.fixture
def counted_newstest(monkeypatch):
  """The offline task's source counts the examples read from it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  counter = tf.Variable(0, dtype=tf.int64)
  original = data._offline_dataset_fn  # pylint: disable=protected-access

  def counted(split, shuffle_files, seed=None):
    def count(ex):
      counter.assign_add(1)
      return ex
    return original(split, shuffle_files, seed).map(count)

  monkeypatch.setattr(data, "_offline_dataset_fn", counted)
  data.register_finetune_tasks(VOCAB)
  yield counter
  monkeypatch.undo()
  data.register_finetune_tasks(VOCAB)


def test_restore_reads_no_more_examples_far_into_the_stream(
    tmp_path, counted_newstest):
  """Resuming at batch 200 from the saved state reads a few examples (the
  pipeline's read-ahead); replaying reads all those before the position."""
  counter = counted_newstest
  it = data.make_dataset(NEWSTEST, "train", **_STREAM)
  _take(it, 200)
  it.save(str(tmp_path / "state"))
  want = _take(it, 1)
  read_to_200 = int(counter.numpy())

  def examples_read(**kw):
    counter.assign(0)
    r = data.make_dataset(NEWSTEST, "train", start_batch=200, **_STREAM,
                          **kw)
    _assert_same(want, _take(r, 1))
    return r.resume, int(counter.numpy())

  replay = examples_read()
  restore = examples_read(iterator_state=str(tmp_path / "state"))
  assert replay[0] == "replayed" and restore[0] == "restored"
  print("examples read: replay", replay[1], "restore", restore[1])
  assert replay[1] > 200 * 4 and read_to_200 > 200 * 4  # >= 1 per row
  assert restore[1] < replay[1] / 10, (restore, replay)


@pytest.mark.slow
def test_span_corruption_iterator_state_restores(tmp_path, tfds_dir):
  """The C4 pipeline (span corruption runs in a numpy function, a pure
  function of seed and tokens) restores to the same batches. The source is
  an in-memory dataset of English news text standing in for C4's TFRecords
  (mock_data's own random examples come from a Python generator, which
  tf.data cannot checkpoint)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from harness.tasks import datasets  # pylint: disable=g-import-not-at-top
  texts = [r["src"] for r in datasets.offline_records("wmt14", "validation")]

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    return tf.data.Dataset.from_tensor_slices({"text": texts[:400]})

  kw = dict(vocab_path=VOCAB, lengths={"inputs": 64, "targets": 16},
            batch_size=2, pack=True, seed=3, shuffle=True, repeat=True,
            data_dir=tfds_dir)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset, data_dir=tfds_dir,
                              policy=tfds.testing.MockPolicy.USE_FILES):
    it = data.make_dataset("ft_c4_span", "train", **kw)
    _take(it, 3)
    it.save(str(tmp_path / "c4"))
    want = _take(it, 2)
    restored = data.make_dataset("ft_c4_span", "train", start_batch=3,
                                 iterator_state=str(tmp_path / "c4"), **kw)
    assert restored.resume == "restored"
    _assert_same(want, _take(restored, 2))


def test_uncheckpointable_pipeline_fails_to_save(tmp_path, mock_tfds):
  """mock_data's generator source cannot be checkpointed: save raises
  (the trainer then logs it and resumes by replaying), leaving no state."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  it = data.make_dataset("ft_xsum", "train", vocab_path=VOCAB,
                         lengths={"inputs": 64, "targets": 16}, batch_size=2,
                         pack=True, seed=3, shuffle=False, repeat=True,
                         data_dir=mock_tfds)
  _take(it, 1)
  with pytest.raises(tf.errors.OpError):
    it.save(str(tmp_path / "state"))
  assert data.read_iterator_meta(str(tmp_path / "state")) is None
  assert not list(tmp_path.iterdir())  # no partial state left behind
