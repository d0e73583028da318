"""The ``--dry_run`` time estimate: a rough cost model without loading models.

Estimate of one cell = decodes × max_decode_len × s, where s is the seconds
per decoding step of the verifier (method and reference_large cells: a
method is assumed no faster than the verifier alone, so this is an upper
bound for any method at relative latency ≤ 1) or of the drafter
(reference_small cells). At batch size 1 a step is memory-bound:
``s = STEP_OVERHEAD_S + parameter bytes / ASSUMED_BANDWIDTH_BYTES_S``, the
parameter count taken from the size config (``jax.eval_shape``, nothing
allocated). Sizes that cannot be resolved use ``DEFAULT_STEP_S``. Compile
time and early EOS are ignored; real runs record the calibrated constants.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import numpy as np

from harness import models
from harness.runner import cells as cells_lib
from harness.runner import config as cfg
from harness.runner import execute
from harness.runner import pairs
from harness.results import schema

STEP_OVERHEAD_S = 2e-4  # Host dispatch + loop overhead per step (CPU-ish).
ASSUMED_BANDWIDTH_BYTES_S = 1e11  # 100 GB/s: a CPU; a TPU v4 chip has ~1.2e12.
DEFAULT_STEP_S = 1e-2  # A step of an unknown model.
_BYTES = {cfg.DType.FLOAT32: 4, cfg.DType.BFLOAT16: 2}


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Dry-run totals.

  Attributes:
    num_cells: cells counted.
    num_decodes: decodes (examples × trials) over those cells.
    seconds: estimated wall time.
    step_s: {"drafter": s, "verifier": s} used.
  """
  num_cells: int
  num_decodes: int
  seconds: float
  step_s: dict[str, float]


def num_params(size: str) -> int | None:
  """Parameter count of a size name, or None when unknown."""
  try:
    config = pairs.size_config(size)
  except KeyError:
    return None
  if isinstance(config, models.T5Config):
    from harness.models import t5  # pylint: disable=g-import-not-at-top
    init = lambda key: t5.init_t5_params(key, config)
  else:
    from harness.models import gemma  # pylint: disable=g-import-not-at-top
    init = lambda key: gemma.init_gemma_params(key, config)
  shapes = jax.eval_shape(init, jax.random.key(0))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def step_seconds(size: str | None, dtype: cfg.DType) -> float:
  params = num_params(size) if size else None
  if params is None:
    return DEFAULT_STEP_S
  return STEP_OVERHEAD_S + params * _BYTES[dtype] / ASSUMED_BANDWIDTH_BYTES_S


def _size(pair: cfg.ModelPair, role: str) -> str | None:
  explicit = getattr(pair, f"{role}_size")
  if explicit or pair.kind is cfg.PairKind.CHECKPOINT:
    return explicit
  return getattr(pair, role)


def _step(pair: cfg.ModelPair, role: str) -> float:
  return step_seconds(_size(pair, role), pair.dtype)


def estimate(cells: Sequence[cells_lib.Cell]) -> Estimate:
  """Decodes and estimated seconds of running ``cells`` (module docstring).

  ``step_s`` reports the step times of the first cell's pair.
  """
  steps = {pair: {role: _step(pair, role) for role in ("drafter", "verifier")}
           for pair in {c.pair for c in cells}}
  decodes = [execute.num_decodes(c) for c in cells]
  seconds = sum(
      n * c.max_decode_len * steps[c.pair][
          "drafter" if c.role is schema.Role.REFERENCE_SMALL else "verifier"]
      for n, c in zip(decodes, cells))
  first = steps[cells[0].pair] if cells else {"drafter": 0.0, "verifier": 0.0}
  return Estimate(num_cells=len(cells), num_decodes=int(np.sum(decodes)),
                  seconds=float(seconds), step_s=first)
