"""Accelerator kinds and topologies for the dry run (no device needed).

Per-chip numbers are the vendors' published figures (HBM per chip, HBM
bandwidth, dense bfloat16 peak); the CPU row is measured once on this
machine by :func:`cpu_bandwidth` (a large array copy). A *topology* is a
device kind, a chip count and the hosts they sit on; ``--simulate_devices``
names one (``parse``):

* ``v4-8``: TPU v4, 4 chips on 1 host (TPU v4/v5p names count TensorCores,
  2 per chip; 4 chips per host). ``v4-16`` = 8 chips over 2 hosts.
* ``v5p-8``: TPU v5p, 4 chips, 1 host (same naming as v4).
* ``v5e-8`` / ``v5litepod-8``: TPU v5e, 8 chips on 1 host (v5e names count
  chips; single-host slices have up to 8 chips, larger slices 4 per host).
* ``8xH100``, ``4xA100``, ``1xH200``: that many GPUs on one host.
* ``cpu``: this machine's CPU as one device.

The table is this module's own (the models helper keeps a per-chip memory
table of its own; the numbers agree).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time

import numpy as np

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class DeviceKind:
  """One accelerator chip.

  Attributes:
    name: e.g. "TPU v4".
    memory_bytes: HBM per chip.
    bandwidth_bytes_s: HBM bandwidth per chip.
    flops: dense bfloat16 peak per chip (FLOP/s).
    chips_per_host: chips on one host (multi-host slices).
  """
  name: str
  memory_bytes: float
  bandwidth_bytes_s: float
  flops: float
  chips_per_host: int


KINDS: dict[str, DeviceKind] = {
    "v4": DeviceKind("TPU v4", 32 * GIB, 1.2e12, 275e12, 4),
    "v5e": DeviceKind("TPU v5e", 16 * GIB, 8.19e11, 197e12, 4),
    "v5p": DeviceKind("TPU v5p", 95 * GIB, 2.765e12, 459e12, 4),
    "a100": DeviceKind("NVIDIA A100 80GB", 80 * GIB, 2.039e12, 312e12, 8),
    "h100": DeviceKind("NVIDIA H100 80GB SXM", 80 * GIB, 3.35e12, 989e12, 8),
    "h200": DeviceKind("NVIDIA H200", 141 * GIB, 4.8e12, 989e12, 8),
}
_CORES_PER_CHIP = {"v4": 2, "v5p": 2, "v5e": 1}
_SINGLE_HOST_MAX = {"v5e": 8}


@dataclasses.dataclass(frozen=True)
class Topology:
  """Chips of one kind over some hosts.

  Attributes:
    kind: the chip.
    num_devices: chips in all.
    num_hosts: hosts they sit on.
    label: how it was named (e.g. "v4-8").
    simulated: True when named by ``--simulate_devices``.
  """
  kind: DeviceKind
  num_devices: int
  num_hosts: int
  label: str
  simulated: bool = True

  def describe(self) -> str:
    host = "host" if self.num_hosts == 1 else "hosts"
    sim = "simulated " if self.simulated else ""
    return (f"{sim}{self.label}: {self.num_devices} × {self.kind.name} "
            f"({self.kind.memory_bytes / GIB:.0f} GiB, "
            f"{self.kind.bandwidth_bytes_s / 1e12:.3g} TB/s each) on "
            f"{self.num_hosts} {host}")


@functools.lru_cache(maxsize=1)
def cpu_bandwidth() -> float:
  """Bytes/s of a 256 MiB array copy on this machine (best of 3)."""
  a = np.ones(32 * 2 ** 20, np.float64)
  b = np.empty_like(a)
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    np.copyto(b, a)
    best = min(best, time.perf_counter() - start)
  return 2 * a.nbytes / best  # One read and one write per element.


def cpu_kind(memory_bytes: float | None = None) -> DeviceKind:
  """This machine's CPU with its measured bandwidth."""
  if memory_bytes is None:
    import os  # pylint: disable=g-import-not-at-top
    memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return DeviceKind("CPU (measured)", float(memory_bytes), cpu_bandwidth(),
                    1e11, 1)


def parse(text: str) -> Topology:
  """A topology name (module docstring) -> Topology; ValueError if unknown."""
  name = text.strip().lower()
  if name == "cpu":
    return Topology(cpu_kind(), 1, 1, "cpu")
  match = re.fullmatch(r"(\d+)\s*x\s*(a100|h100|h200)", name)
  if match:
    count = int(match.group(1))
    kind = KINDS[match.group(2)]
    return Topology(kind, count, -(-count // kind.chips_per_host), text)
  match = re.fullmatch(r"(v4|v5p|v5e|v5litepod)-(\d+)", name)
  if match:
    key = "v5e" if match.group(1) == "v5litepod" else match.group(1)
    chips = int(match.group(2)) // _CORES_PER_CHIP[key]
    if chips < 1:
      raise ValueError(f"--simulate_devices {text!r}: fewer than one chip")
    kind = KINDS[key]
    per_host = (chips if chips <= _SINGLE_HOST_MAX.get(key, 0)
                else kind.chips_per_host)
    return Topology(kind, chips, -(-chips // per_host), text)
  raise ValueError(f"--simulate_devices {text!r}: unknown topology; use e.g. "
                   "v4-8, v4-16, v5e-8, v5p-8, 8xH100, 4xA100, 1xH200 or cpu")


def _kind_of(device_kind: str) -> DeviceKind | None:
  text = device_kind.lower()
  for key, pattern in (("v5p", "v5p"), ("v5e", "v5 lite"), ("v5e", "v5e"),
                       ("v4", "v4"), ("h200", "h200"), ("h100", "h100"),
                       ("a100", "a100")):
    if pattern in text:
      return KINDS[key]
  return None


def detect() -> Topology:
  """The devices JAX sees here (their memory from ``memory_stats`` if any)."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  first = devices[0]
  kind = _kind_of(first.device_kind)
  stats = first.memory_stats() if hasattr(first, "memory_stats") else None
  limit = (stats or {}).get("bytes_limit")
  if kind is None:
    kind = cpu_kind() if first.platform == "cpu" else DeviceKind(
        first.device_kind, float(limit or 16 * GIB), 1e12, 1e14, 8)
  if limit:
    kind = dataclasses.replace(kind, memory_bytes=float(limit))
  return Topology(kind, len(devices), jax.process_count(),
                  f"{len(devices)} × {first.device_kind}", simulated=False)
