"""Per-chip memory, and the model parallelism a pair needs on this host.

:data:`CHIP_MEMORY_GIB` is the one table of accelerator memory (nominal HBM
per chip); :func:`device_memory_bytes` reports the memory of a present
device (jax's `memory_stats()` where the backend offers it, else the table,
else host memory for CPUs). :func:`choose_model_parallel` picks the model
axis size for a verifier split tensor-parallel (`harness.models.sharding`)
beside replicated drafters: the smallest divisor of the device count whose
per-chip weights plus a margin fit a chip, or a one-line refusal naming the
numbers. The dry run uses the same functions with a simulated host.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

import jax
import numpy as np

from harness.models.configs import GemmaConfig, T5Config
from harness.models.sharding import partition_specs
from harness.models.weights import param_shapes

GIB = 2 ** 30
AUTO = "auto"
# Share of each chip kept free for KV caches, activations and XLA buffers.
DEFAULT_MARGIN = 0.1


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator kind.

  Attributes:
    name: short name (e.g. "v4", "H100").
    memory_gib: nominal memory per chip, GiB.
    match: lowercase substrings of jax's `device_kind`, all required.
  """
  name: str
  memory_gib: float
  match: tuple[str, ...]


# Most specific first: a device kind takes the first entry it matches.
CHIPS: tuple[Chip, ...] = (
    Chip("v5e", 16, ("tpu", "v5 lite")),
    Chip("v5e", 16, ("tpu", "v5e")),
    Chip("v5p", 95, ("tpu", "v5p")),
    Chip("v5p", 95, ("tpu", "v5")),
    Chip("v4", 32, ("tpu", "v4")),
    Chip("A100-80GB", 80, ("a100", "80gb")),
    Chip("A100-40GB", 40, ("a100",)),
    Chip("H100", 80, ("h100",)),
    Chip("H200", 141, ("h200",)),
)
# Name -> GiB per chip (the dry run simulates hosts by these names).
CHIP_MEMORY_GIB: dict[str, float] = {c.name: c.memory_gib for c in CHIPS}


def chip_of(device_kind: str) -> Chip | None:
  """The table entry of a jax `device_kind` string, or None (CPU, unknown)."""
  kind = device_kind.lower()
  for chip in CHIPS:
    if all(m in kind for m in chip.match):
      return chip
  return None


def host_memory_bytes() -> int:
  """Physical memory of this host."""
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_memory_bytes(device: jax.Device | None = None) -> int:
  """Memory one device can hold, in bytes.

  The backend's own limit (`memory_stats()["bytes_limit"]`, which accounts
  for XLA's preallocation fraction on GPUs) where available; else the
  nominal memory of :data:`CHIPS`; else (CPU) the host's memory.
  """
  device = device or jax.devices()[0]
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    pass  # backends without memory statistics (CPU) raise or return None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  chip = chip_of(device.device_kind)
  if chip is not None:
    return int(chip.memory_gib * GIB)
  return host_memory_bytes()


def weight_bytes_per_chip(config: T5Config | GemmaConfig, dtype,
                          model_parallel: int) -> int:
  """Bytes of one chip's parameters when split `model_parallel` ways (a
  dimension the axis does not divide stays replicated, as in `sharding`)."""
  shapes = param_shapes(config)
  specs = partition_specs(shapes, model_parallel)
  itemsize = np.dtype(dtype).itemsize
  total = 0
  for shape, spec in zip(jax.tree.leaves(shapes), jax.tree.leaves(
      specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))):
    size = math.prod(shape.shape) * itemsize
    total += size // model_parallel if any(spec) else size
  return total


def _gib(n: float) -> str:
  return f"{n / GIB:.1f} GiB"


def choose_model_parallel(requested: int | str,
                          verifier: T5Config | GemmaConfig,
                          drafters: Sequence[T5Config | GemmaConfig],
                          dtype, num_devices: int, chip_bytes: int,
                          margin: float = DEFAULT_MARGIN) -> int:
  """The model axis size for a verifier split over chips beside replicated
  drafters.

  Args:
    requested: "auto" (the smallest divisor of `num_devices` that fits), or
      a chip count to check.
    verifier: its config (split tensor-parallel).
    drafters: their configs (each replicated on every chip).
    dtype: parameter dtype.
    num_devices: devices of the host (or of the simulated one).
    chip_bytes: memory per device.
    margin: share of `chip_bytes` kept free for caches and activations.

  Returns:
    The model axis size (1: no splitting).

  Raises:
    ValueError: one line naming the parameter GiB, the chips and the GiB per
      chip, when nothing fits or `requested` does not divide the devices.
  """
  usable = chip_bytes * (1 - margin)
  drafter_bytes = sum(weight_bytes_per_chip(c, dtype, 1) for c in drafters)

  def per_chip(m: int) -> int:
    return weight_bytes_per_chip(verifier, dtype, m) + drafter_bytes

  if requested != AUTO:
    m = int(requested)
    if m < 1 or num_devices % m:
      raise ValueError(f"model_parallel={m} does not divide the "
                       f"{num_devices} devices")
    candidates = [m]
  else:
    candidates = [m for m in range(1, num_devices + 1) if num_devices % m == 0]
  for m in candidates:
    if per_chip(m) <= usable:
      return m
  m = candidates[-1]
  total = weight_bytes_per_chip(verifier, dtype, 1) + drafter_bytes
  raise ValueError(
      f"parameters do not fit: {_gib(total)} in all (verifier split "
      f"{m}-way, drafters replicated) needs {_gib(per_chip(m))} per chip, "
      f"but {num_devices} chips × {_gib(chip_bytes)} leave {_gib(usable)} "
      f"each after a {margin:.0%} margin")


def present_model_parallel(requested: int | str,
                           verifier: T5Config | GemmaConfig,
                           drafters: Sequence[T5Config | GemmaConfig],
                           dtype, margin: float = DEFAULT_MARGIN) -> int:
  """`choose_model_parallel` for this process's devices."""
  return choose_model_parallel(requested, verifier, drafters, dtype,
                               jax.device_count(), device_memory_bytes(),
                               margin)
