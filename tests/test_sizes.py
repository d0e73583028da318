"""One source for the embedded default's sizes: the shipped checkpoints.

``pairs.size_config`` (dry-run estimates, random pairs of the same sizes)
reads the shipped config.json files, and the training presets that built
those checkpoints must agree with them.
"""

from __future__ import annotations

import jax
import pytest

from harness import models
from harness.runner import config as cfg
from harness.runner import preflight, pairs
from harness.training import presets

SHIPPED = [(arch, size) for arch in ("t5", "gemma")
           for size in ("small", "large")]


def _shipped(arch: str, size: str):
  return models.load_pretrained(pairs.resolve(
      f"checkpoints/multi30k_{arch}/{size}"), require_tokenizer=False)


@pytest.mark.parametrize("arch,size", SHIPPED)
def test_size_names_describe_the_shipped_checkpoints(arch, size):
  shipped = _shipped(arch, size)
  name = f"multi30k_{arch}_{size}"
  assert pairs.size_config(name) == shipped.model.config
  footprint = preflight.footprint(pairs.size_config(name), cfg.DType.FLOAT32,
                               split=1, input_len=8, output_len=8, gamma=1)
  assert footprint.num_params == sum(
      p.size for p in jax.tree.leaves(shipped.params))


@pytest.mark.parametrize("arch,size", SHIPPED)
def test_training_presets_match_the_shipped_checkpoints(arch, size):
  config = _shipped(arch, size).model.config
  assert presets.make_config(arch, size, config.vocab_size) == config
