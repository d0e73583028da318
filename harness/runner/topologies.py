"""Accelerator topologies for the dry run (no device needed).

The per-chip facts (memory, bandwidth, peak FLOPs, chips per host) are the
one table ``harness.models.chips.CHIPS``; the CPU row is measured once on
this machine by :func:`cpu_bandwidth` (a large array copy). A *topology* is
a chip, a chip count and the hosts they sit on; ``--simulate_devices`` names
one (``parse``):

* ``v4-8``: TPU v4, 4 chips on 1 host (TPU v4/v5p names count TensorCores,
  2 per chip; 4 chips per host). ``v4-16`` = 8 chips over 2 hosts.
* ``v5p-8``: TPU v5p, 4 chips, 1 host (same naming as v4).
* ``v5e-8`` / ``v5litepod-8``: TPU v5e, 8 chips on 1 host (v5e names count
  chips; single-host slices have up to 8 chips, larger slices 4 per host).
* ``8xH100``, ``4xA100`` (80 GB; ``4xA100-40GB`` the 40 GB part),
  ``1xH200``: that many GPUs on one host.
* ``cpu``: this machine's CPU as one device.
* ``Nx<topology>`` (or ``N*``): a described cluster of N such hosts, e.g.
  ``8xv4-8`` (8 TPU VMs of 4 chips) or ``2x8xH100``; the dry run prices it
  (``harness.runner.placement``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time

import numpy as np

from harness.models import chips as chips_lib
from harness.models.chips import GIB, Chip

_CORES_PER_CHIP = {"v4": 2, "v5p": 2, "v5e": 1}
_SINGLE_HOST_MAX = {"v5e": 8}
CPU = "cpu"  # The name of the measured CPU "chip".


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
  kind: Chip
  num_devices: int
  num_hosts: int
  label: str
  simulated: bool = True

  @property
  def devices_per_host(self) -> int:
    return self.num_devices // self.num_hosts

  def describe(self) -> str:
    host = "host" if self.num_hosts == 1 else "hosts"
    sim = "simulated " if self.simulated else ""
    return (f"{sim}{self.label}: {self.num_devices} × {self.kind.title} "
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


def cpu_kind(memory_bytes: float | None = None) -> Chip:
  """This machine's CPU with its measured bandwidth (host memory unless
  ``memory_bytes`` is given)."""
  if memory_bytes is None:
    memory_bytes = chips_lib.host_memory_bytes()
  return Chip(CPU, "CPU (measured)", memory_bytes / GIB, cpu_bandwidth(),
              1e11, 1)


def parse(text: str) -> Topology:
  """A topology name (module docstring) -> Topology; ValueError if unknown."""
  name = text.strip().lower()
  cluster = re.fullmatch(r"(\d+)\s*[x×*]\s*(.*-\d+|\d+\s*x.*)", name)
  if cluster:
    count = int(cluster.group(1))
    host = parse(cluster.group(2))
    if count < 1:
      raise ValueError(f"--simulate_devices {text!r}: fewer than one host")
    return Topology(host.kind, count * host.num_devices,
                    count * host.num_hosts, text)
  if name == CPU:
    return Topology(cpu_kind(), 1, 1, CPU)
  match = re.fullmatch(r"(\d+)\s*x\s*(a100(?:-[48]0gb)?|h100|h200)", name)
  if match:
    count = int(match.group(1))
    kind = chips_lib.chip_named(match.group(2))
    return Topology(kind, count, -(-count // kind.chips_per_host), text)
  match = re.fullmatch(r"(v4|v5p|v5e|v5litepod)-(\d+)", name)
  if match:
    key = "v5e" if match.group(1) == "v5litepod" else match.group(1)
    chips = int(match.group(2)) // _CORES_PER_CHIP[key]
    if chips < 1:
      raise ValueError(f"--simulate_devices {text!r}: fewer than one chip")
    kind = chips_lib.chip_named(key)
    per_host = (chips if chips <= _SINGLE_HOST_MAX.get(key, 0)
                else kind.chips_per_host)
    return Topology(kind, chips, -(-chips // per_host), text)
  raise ValueError(f"--simulate_devices {text!r}: unknown topology; use e.g. "
                   "v4-8, v4-16, v5e-8, v5p-8, 8xH100, 4xA100, 1xH200, cpu "
                   "or a cluster such as 8xv4-8")


def detect() -> Topology:
  """The devices JAX sees here (their memory from ``memory_stats`` if any)."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  first = jax.local_devices()[0]
  kind = chips_lib.chip_of(first.device_kind)
  limit = chips_lib.memory_limit(first)
  if kind is None:
    kind = cpu_kind() if first.platform == "cpu" else Chip(
        first.device_kind, first.device_kind, (limit or 16 * GIB) / GIB,
        1e12, 1e14, 8)
  if limit:
    kind = dataclasses.replace(kind, memory_gib=limit / GIB)
  return Topology(kind, len(devices), jax.process_count(),
                  f"{len(devices)} × {first.device_kind}", simulated=False)
