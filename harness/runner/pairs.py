"""Loading a drafter/verifier pair, and the sizes of random pairs.

Random pairs (``PairKind.RANDOM``) are built in memory from a size name in
:data:`RANDOM_SIZES` (or any ``harness.models.get_config`` name) with a tiny
SentencePiece vocabulary trained, single-threaded and so deterministically,
on the first lines of the bundled Multi30k training text. Checkpoint pairs
are Hugging-Face-format directories or GGUF files
(``harness.models.open_checkpoint``): their vocabularies are checked before
any weight is read, then every tensor is loaded straight into its place on
one replica's chips (:func:`pair_layout`: the layout the checks before the
run chose, ``harness.runner.placement``, recorded in
``harness.models.layout``).

Size names: the tiny smoke-run sizes of :data:`RANDOM_SIZES`, the embedded
default's sizes (:data:`SHIPPED_SIZES`, read from the shipped checkpoints'
``config.json``, the one source of those sizes), or any
``harness.models.get_config`` name.
"""

from __future__ import annotations

import dataclasses
import contextlib
import functools
import gzip
import io
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from harness import REPO_ROOT
from harness import decoding
from harness import models
from harness.models import base, configs, chips, weights
from harness.models import layout as layout_lib
from harness.runner import config as cfg

# Tiny random sizes for smoke tests (vocabulary 128; SentencePiece uses 100).
RANDOM_SIZES: dict[str, Any] = {
    "tiny_t5": configs.TINY_T5,
    "tiny_t5_large": dataclasses.replace(configs.TINY_T5, d_model=48,
                                         d_ff=96, num_decoder_layers=3),
    "tiny_gemma2": configs.TINY_GEMMA2,
    "tiny_gemma2_large": dataclasses.replace(configs.TINY_GEMMA2,
                                             d_model=48, d_ff=96),
}
# The embedded default's sizes: the shipped checkpoints (relative to the
# repository root) whose config.json defines them.
SHIPPED_SIZES: dict[str, str] = {
    "multi30k_t5_small": "checkpoints/multi30k_t5/small",
    "multi30k_t5_large": "checkpoints/multi30k_t5/large",
    "multi30k_gemma_small": "checkpoints/multi30k_gemma/small",
    "multi30k_gemma_large": "checkpoints/multi30k_gemma/large",
}
RANDOM_VOCAB_SIZE = 100  # SentencePiece pieces of random pairs (< 128).
_TOKENIZER_LINES = 400  # Multi30k lines per language to train it on.
# ``ModelPair.dtype`` -> the parameter dtype.
DTYPES = {cfg.DType.FLOAT32: jnp.float32, cfg.DType.BFLOAT16: jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class LoadedPair:
  """Models ready for ``harness.decoding.decode``.

  Attributes:
    drafter: the small model (a decoding-protocol pytree).
    verifier: the large model.
    tokenizer: the shared ``harness.models.Tokenizer``.
    encoder_decoder: True for T5 (prompts end in EOS), False for Gemma.
  """
  drafter: Any
  verifier: Any
  tokenizer: models.Tokenizer
  encoder_decoder: bool
  extra_drafters: tuple[Any, ...] = ()
  bigram_table: str | None = None

  @functools.cached_property
  def maxgram(self):
    """Max-Gram's bigram table (built once, on first use)."""
    return load_or_build_maxgram(self.bigram_table, self.tokenizer,
                                 self.verifier.vocab_size)

  def drafter_for(self, method: str):
    """The ``drafter`` argument of a method: a multi-drafter method (CS
    Drafting, ``MethodSpec.multi_drafter``) gets every drafter level
    (largest first) and Max-Gram; other methods the small model."""
    spec = decoding.METHODS.get(method)
    if spec is not None and spec.multi_drafter:
      return (self.drafter, *self.extra_drafters, self.maxgram)
    return self.drafter


def size_config(name: str):
  """Architecture config of a size name (module docstring)."""
  if name in RANDOM_SIZES:
    return RANDOM_SIZES[name]
  if name in SHIPPED_SIZES:
    return _shipped_config(SHIPPED_SIZES[name])
  return models.get_config(name)


@functools.cache
def _shipped_config(path: str):
  """The architecture in a shipped checkpoint's config.json."""
  return models.open_checkpoint(resolve(path),
                                require_tokenizer=False).config


def _training_lines(limit: int | None = _TOKENIZER_LINES) -> list[str]:
  """Multi30k training lines (EN then DE), the first ``limit`` of each."""
  from harness import tasks  # pylint: disable=g-import-not-at-top
  lines = []
  for lang in ("en", "de"):
    path = tasks.data_root() / "multi30k" / f"train.{lang}.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
      lines += [line.strip() for _, line in zip(
          range(limit) if limit else iter(int, 1), f)]
  return lines


def load_or_build_maxgram(path: str | None, tokenizer: models.Tokenizer,
                          vocab_size: int):
  """Loads a saved bigram table, or counts one on the Multi30k training text
  (all 29,000 pairs, both languages) and saves it to ``path``."""
  from harness.decoding import maxgram  # pylint: disable=g-import-not-at-top
  if path and os.path.exists(path):
    mag = maxgram.MaxGram.load(path)
    if mag.vocab_size != vocab_size:
      raise ValueError(f"{path}: bigram table has {mag.vocab_size} entries, "
                       f"the pair's vocabulary {vocab_size}")
    return mag
  ids = [tokenizer.encode(line) for line in _training_lines(limit=None)]
  mag = maxgram.build_bigram_table(ids, vocab_size)
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    mag.save(path)
  return mag


def train_sentencepiece(lines: list[str], path: str | os.PathLike,
                        vocab_size: int, with_bos: bool) -> None:
  """Trains a small unigram SentencePiece model, single-threaded (so
  deterministically), and writes it to ``path``.

  Ids: pad 0, eos 1, then (``with_bos``, Gemma style) bos 2, unk 3;
  otherwise (T5 style) unk 2 and no BOS.
  """
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size,
      model_type="unigram", pad_id=0, eos_id=1,
      bos_id=2 if with_bos else -1, unk_id=3 if with_bos else 2,
      hard_vocab_limit=False, num_threads=1, minloglevel=2)
  with open(path, "wb") as f:
    f.write(buf.getvalue())


def train_tokenizer(path: str, with_bos: bool) -> models.Tokenizer:
  """A tiny deterministic SentencePiece model on Multi30k text."""
  train_sentencepiece(_training_lines(), path, RANDOM_VOCAB_SIZE, with_bos)
  return models.Tokenizer(path)


def _random_pair(pair: cfg.ModelPair, work_dir: str) -> LoadedPair:
  small, large = size_config(pair.drafter), size_config(pair.verifier)
  t5 = isinstance(large, models.T5Config)
  os.makedirs(work_dir, exist_ok=True)
  tokenizer = train_tokenizer(os.path.join(work_dir, "random_pair.model"),
                              with_bos=not t5)
  build = models.random_t5 if t5 else models.random_gemma
  keys = jax.random.split(jax.random.key(pair.model_seed),
                          2 + len(pair.extra_drafters))
  dtype = DTYPES[pair.dtype]
  extra = tuple(build(k, size_config(name), dtype, tokenizer_id=tokenizer.id)
                for k, name in zip(keys[2:], pair.extra_drafters))
  return LoadedPair(
      drafter=build(keys[0], small, dtype, tokenizer_id=tokenizer.id),
      verifier=build(keys[1], large, dtype, tokenizer_id=tokenizer.id),
      tokenizer=tokenizer, encoder_decoder=t5, extra_drafters=extra,
      bigram_table=pair.bigram_table)


def resolve(path: str) -> str:
  """A relative checkpoint path: from the working directory if it exists
  there, else from the repository root (so shipped gin files work from any
  directory)."""
  if os.path.isabs(path) or os.path.exists(path):
    return path
  candidate = os.path.join(REPO_ROOT, path)
  return candidate if os.path.exists(candidate) else path


def local_mesh(model_parallel: int) -> jax.sharding.Mesh | None:
  """A ("data", "model") mesh over this process's devices, or None for one
  chip. Under ``--distributed`` each host runs its own cells, so a model
  never spans hosts; with one process these are all the devices."""
  if model_parallel == 1:
    return None
  local = jax.local_devices()
  return jax.make_mesh((len(local) // model_parallel, model_parallel),
                       (base.DATA_AXIS, base.MODEL_AXIS), devices=local)


def pair_layout(pair: cfg.ModelPair, verifier, drafters: Sequence[Any],
                dtype) -> layout_lib.Layout:
  """The pair's layout: the one recorded before the run (by name), else
  its model parallelism on this process's devices
  (``chips.present_model_parallel``) with the drafter replicated unless
  ``drafter_placement`` says otherwise."""
  recorded = layout_lib.recorded(pair.name)
  if recorded is not None:
    return recorded
  m = chips.present_model_parallel(pair.model_parallel, verifier,
                                   list(drafters), dtype)
  drafter = (layout_lib.REPLICATED if pair.drafter_placement == "auto"
             else pair.drafter_placement)
  return layout_lib.fixed(m, len(jax.local_devices()), drafter)


def _on(devices: Sequence[jax.Device]):
  """Loading onto one chip: that chip as the default device."""
  if len(devices) == 1:
    return jax.default_device(devices[0])
  return contextlib.nullcontext()


def _checkpoint_pair(pair: cfg.ModelPair,
                     devices: Sequence[jax.Device] | None) -> LoadedPair:
  """Opens every checkpoint and checks the vocabularies before reading any
  weight, then loads each tensor straight onto one replica's chips: the
  verifier split over the model axis, the drafters replicated or split as
  the layout says."""
  dtype = DTYPES[pair.dtype]
  paths = [resolve(p) for p in (pair.drafter, *pair.extra_drafters)]
  drafters = [models.open_checkpoint(p) for p in paths]
  large = models.open_checkpoint(resolve(pair.verifier))
  for path, small in zip(paths, drafters):
    models.check_same_vocabulary(small, large, path, large.path)
  lay = pair_layout(pair, large.config, [d.config for d in drafters], dtype)
  devices = list(devices or layout_lib.local_chip_set(lay))
  chip_set = devices[:lay.model_parallel]
  mesh = layout_lib.mesh_for(chip_set)
  with _on(chip_set):
    verifier = weights.load_checkpoint(large, dtype, mesh)
    small, *extra = [weights.load_checkpoint(
        d, dtype, mesh, replicate=lay.drafter != layout_lib.SHARDED)
                     for d in drafters]
  return LoadedPair(drafter=small.model, verifier=verifier.model,
                    tokenizer=verifier.tokenizer,
                    encoder_decoder=isinstance(verifier.model, models.T5),
                    extra_drafters=tuple(p.model for p in extra),
                    bigram_table=pair.bigram_table)


def _place(loaded: LoadedPair, pair: cfg.ModelPair,
           devices: Sequence[jax.Device] | None) -> LoadedPair:
  """Puts a random pair on one replica's chips (``layout.place``)."""
  small = (loaded.drafter, *loaded.extra_drafters)
  lay = pair_layout(pair, loaded.verifier.config, [m.config for m in small],
                    loaded.verifier.dtype)
  devices = list(devices or layout_lib.local_chip_set(lay))
  verifier, (drafter, *extra) = layout_lib.place(loaded.verifier, small, lay,
                                                 devices)
  return dataclasses.replace(loaded, verifier=verifier, drafter=drafter,
                             extra_drafters=tuple(extra))


def load_pair(pair: cfg.ModelPair, work_dir: str,
              devices: Sequence[jax.Device] | None = None) -> LoadedPair:
  """Loads (or builds) the pair on ``devices`` (default: this process's
  replica's chips, ``layout.local_chip_set``); ``work_dir`` holds a random
  pair's vocab."""
  if pair.kind is cfg.PairKind.RANDOM:
    loaded = _place(_random_pair(pair, work_dir), pair, devices)
  else:
    loaded = _checkpoint_pair(pair, devices)
  if loaded.bigram_table:
    loaded = dataclasses.replace(loaded,
                                 bigram_table=resolve(loaded.bigram_table))
  return loaded
