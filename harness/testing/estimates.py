"""A chip and a model footprint with round numbers, for the estimate's and
the placement's hand-computed tests: 1 GB/s, 1 GFLOP/s, 16 GiB, and a
1,000-parameter model of 2,000 bytes whose decoder step reads 1,200."""

from __future__ import annotations

from harness.models import chips
from harness.runner import preflight

CHIP = chips.Chip("test", "Test chip", 16, 1e9, 1e9, 1)


def footprint(**kw) -> preflight.Footprint:
  """The round-number footprint, with any field replaced by ``kw``."""
  base = dict(num_params=1000, weight_bytes=2000.0, kv_bytes=100.0,
              num_layers=4, split=1, step_weight_bytes=1200.0,
              prefill_flops=40_000.0)
  base.update(kw)
  return preflight.Footprint(**base)
