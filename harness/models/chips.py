"""Accelerator chips, and the model parallelism a pair needs on a host.

:data:`CHIPS` is the one table of accelerator facts: memory, memory
bandwidth and dense bfloat16 peak FLOP/s per chip (the vendors' published
figures), and chips per host. The runner's topologies (``--simulate_devices``,
``harness.runner.topologies``) and its time estimate read it;
:func:`device_memory_bytes` reports the memory of a present device (jax's
`memory_stats()` where the backend offers it, else the table, else host
memory for CPUs). :func:`choose_model_parallel` picks the model axis size for
a verifier split tensor-parallel (`harness.models.sharding`) beside
replicated drafters: the smallest divisor of the device count whose per-chip
weights plus a margin fit a chip, or a one-line refusal naming the numbers.
The dry run uses the same functions with a simulated host.
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
    name: short name (e.g. "v4", "H100"); topologies are named by it.
    title: full name for messages (e.g. "TPU v4").
    memory_gib: memory per chip, GiB (nominal HBM for the table's chips).
    bandwidth_bytes_s: memory bandwidth per chip, bytes/s.
    flops: dense bfloat16 peak per chip, FLOP/s.
    chips_per_host: chips on one host of a multi-host slice.
    match: alternatives, each a tuple of lowercase substrings of jax's
      `device_kind` that must all occur.
    bandwidth_fraction: share of `bandwidth_bytes_s` that a decoding
      step's streaming read reaches, as measured by
      `scripts/accelerator_check.sh` (1.0: not measured, the vendor's
      figure is used as it is).
    layer_s: fixed cost of one decoder layer per batch-1 step (kernel
      launches and small operations), measured likewise; None: not
      measured.
    step_overhead_s: the decoding loop's own cost per autoregressive
      iteration (sampling at the vocabulary, bookkeeping, loop control;
      `plan_gamma --loop`'s null models), measured likewise; None: not
      measured (the dry run then assumes a stated default).
  """
  name: str
  title: str
  memory_gib: float
  bandwidth_bytes_s: float
  flops: float
  chips_per_host: int
  match: tuple[tuple[str, ...], ...] = ()
  bandwidth_fraction: float = 1.0
  layer_s: float | None = None
  step_overhead_s: float | None = None

  @property
  def memory_bytes(self) -> float:
    return self.memory_gib * GIB


# Most specific first: a device kind takes the first entry it matches.
CHIPS: tuple[Chip, ...] = (
    Chip("v5e", "TPU v5e", 16, 8.19e11, 197e12, 4,
         (("tpu", "v5 lite"), ("tpu", "v5e"))),
    Chip("v5p", "TPU v5p", 95, 2.765e12, 459e12, 4,
         (("tpu", "v5p"), ("tpu", "v5"))),
    Chip("v4", "TPU v4", 32, 1.2e12, 275e12, 4, (("tpu", "v4"),)),
    Chip("A100-80GB", "NVIDIA A100 80GB", 80, 2.039e12, 312e12, 8,
         (("a100", "80gb"),)),
    Chip("A100-40GB", "NVIDIA A100 40GB", 40, 1.555e12, 312e12, 8,
         (("a100",),)),
    Chip("H100", "NVIDIA H100 80GB SXM", 80, 3.35e12, 989e12, 8,
         (("h100",),)),
    # Measured (results/accelerator/nvidia_h200, JAX 0.11.2, bfloat16): a
    # 1 GiB streaming read reaches 2.54 TB/s and Gemma 2 2B's working set
    # 2.52 TB/s (0.525 of 4.8); its batch-1 step takes 2.81 ms, 0.72 ms
    # more than its 5.26 GB at that rate: 28 µs for each of its 26 layers.
    # (T5 v1.1 large's decoder layers cost more: ~70 µs each at K = 1.)
    # The autoregressive loop itself costs 118 µs per iteration at Gemma's
    # 262,144-token vocabulary (plan/plan_gamma_gemma3_270m.json,
    # loop_us_per_iteration; a speculative iteration 288-301 µs at γ = 1-2).
    Chip("H200", "NVIDIA H200", 141, 4.8e12, 989e12, 8, (("h200",),),
         bandwidth_fraction=0.525, layer_s=28e-6, step_overhead_s=118e-6),
)
# Name -> GiB per chip.
CHIP_MEMORY_GIB: dict[str, float] = {c.name: c.memory_gib for c in CHIPS}


def chip_of(device_kind: str) -> Chip | None:
  """The table entry of a jax `device_kind` string, or None (CPU, unknown)."""
  kind = device_kind.lower()
  for chip in CHIPS:
    if any(all(m in kind for m in alt) for alt in chip.match):
      return chip
  return None


def chip_named(name: str) -> Chip:
  """The table entry of a short name, case-insensitive; "A100" is the 80 GB
  part. KeyError if unknown."""
  names = {c.name.lower(): c for c in CHIPS}
  names["a100"] = names["a100-80gb"]
  return names[name.lower()]


def host_memory_bytes() -> int:
  """Physical memory of this host."""
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(device: jax.Device) -> int | None:
  """The backend's own memory limit of a device
  (`memory_stats()["bytes_limit"]`, which accounts for XLA's preallocation
  fraction on GPUs), or None where the backend reports none (CPU)."""
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    pass  # backends without memory statistics (CPU) raise or return None
  limit = (stats or {}).get("bytes_limit")
  return int(limit) if limit else None


def device_memory_bytes(device: jax.Device | None = None) -> int:
  """Memory one device can hold, in bytes: :func:`memory_limit` where
  available; else the nominal memory of :data:`CHIPS`; else (CPU) the
  host's memory."""
  device = device or jax.local_devices()[0]
  limit = memory_limit(device)
  if limit:
    return limit
  chip = chip_of(device.device_kind)
  if chip is not None:
    return int(chip.memory_bytes)
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
  """`choose_model_parallel` for this process's devices (a multi-host run
  places each model on one host's devices)."""
  return choose_model_parallel(requested, verifier, drafters, dtype,
                               len(jax.local_devices()),
                               device_memory_bytes(), margin)
