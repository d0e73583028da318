"""Where a pair's models sit on a host's chips: model parallelism, drafter
placement and independent replicas.

A :class:`Layout` splits the verifier tensor-parallel over
``model_parallel`` chips (``harness.models.sharding``) and places the
drafters beside it: replicated on those chips, sharded as the verifier is,
or on a chip of their own. A host's chips hold ``replicas`` such chip sets;
each replica is an independent stream of cells, timed alone on its chips
(:func:`replica_devices`). :func:`place` puts built models on one replica's
chips; the runner's loader (``harness.runner.pairs``) reads checkpoints
straight onto them with :func:`mesh_for`.

The runner chooses a layout per pair before the first cell
(``harness.runner.placement``) and :func:`record`\\ s it; loading reads it
back (:func:`recorded`) and provenance stamps it on every results file
(:func:`recorded_all`). A worker that runs one replica of several names it
in ``REPLICA_ENV`` (default 0).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import jax

from harness.models import base, sharding

REPLICATED, SHARDED, OWN_CHIP = "replicated", "sharded", "own chip"
DRAFTER_PLACEMENTS = (REPLICATED, SHARDED, OWN_CHIP)
REPLICA_ENV = "HARNESS_REPLICA"

_RECORDED: dict[str, "Layout"] = {}


@dataclasses.dataclass(frozen=True)
class Layout:
  """A pair's chips on one host.

  Attributes:
    model_parallel: chips the verifier is split over.
    drafter: one of ``DRAFTER_PLACEMENTS``.
    replicas: independent chip sets on the host, each running its own cells.
    chosen_by: how it was decided (e.g. "auto", "model_parallel=4").
  """
  model_parallel: int
  drafter: str = REPLICATED
  replicas: int = 1
  chosen_by: str = "auto"

  def __post_init__(self):
    if self.drafter not in DRAFTER_PLACEMENTS:
      raise ValueError(f"drafter placement {self.drafter!r} is not one of "
                       f"{', '.join(DRAFTER_PLACEMENTS)}")

  @property
  def chips_per_replica(self) -> int:
    return self.model_parallel + (self.drafter == OWN_CHIP)

  @property
  def drafter_split(self) -> int:
    """Ways each drafter is split (1: whole on every chip that holds it)."""
    return self.model_parallel if self.drafter == SHARDED else 1

  @property
  def runnable(self) -> bool:
    """Whether the fused decoding loop can run it: one compiled program
    holds both models, so they must share one chip set."""
    return self.drafter != OWN_CHIP

  def describe(self) -> str:
    """E.g. "4 replicas × 1 chip, drafter replicated"."""
    chips = ("chip" if self.model_parallel == 1 else "chips")
    own = " + 1 drafter chip" if self.drafter == OWN_CHIP else ""
    drafter = "" if self.drafter == OWN_CHIP else f", drafter {self.drafter}"
    noun = "replica" if self.replicas == 1 else "replicas"
    return (f"{self.replicas} {noun} × {self.model_parallel} {chips}{own}"
            f"{drafter}")

  def as_dict(self) -> dict[str, Any]:
    return {"model_parallel": self.model_parallel, "drafter": self.drafter,
            "replicas": self.replicas,
            "chips_per_replica": self.chips_per_replica,
            "chosen_by": self.chosen_by}


def fixed(model_parallel: int, num_devices: int,
          drafter: str = REPLICATED, chosen_by: str = "") -> Layout:
  """The layout of a given split: as many replicas as the devices hold."""
  chips = model_parallel + (drafter == OWN_CHIP)
  return Layout(model_parallel, drafter, max(num_devices // chips, 1),
                chosen_by or f"model_parallel={model_parallel}")


def replica_devices(layout: Layout, devices: Sequence[jax.Device]
                    ) -> list[list[jax.Device]]:
  """Each replica's chips: consecutive groups of ``chips_per_replica``."""
  n = layout.chips_per_replica
  if layout.replicas * n > len(devices):
    raise ValueError(f"layout {layout.describe()} needs "
                     f"{layout.replicas * n} devices; {len(devices)} here")
  return [list(devices[i * n:(i + 1) * n]) for i in range(layout.replicas)]


def replica_index() -> int:
  """This worker's replica (``REPLICA_ENV``, default 0)."""
  return int(os.environ.get(REPLICA_ENV, "0"))


def local_chip_set(layout: Layout) -> list[jax.Device]:
  """This process's replica's chips among its local devices.

  A process that sees exactly one replica's worth of chips (a Ray worker
  given its chips by the scheduler: CUDA_VISIBLE_DEVICES) uses them all.
  """
  local = jax.local_devices()
  if len(local) == layout.chips_per_replica:
    return list(local)
  groups = replica_devices(layout, local)
  index = replica_index()
  if not 0 <= index < len(groups):
    raise ValueError(f"{REPLICA_ENV}={index}: the layout "
                     f"{layout.describe()} has {len(groups)} replicas")
  return groups[index]


def mesh_for(devices: Sequence[jax.Device]) -> jax.sharding.Mesh | None:
  """A (1, len(devices)) ("data", "model") mesh, or None for one chip."""
  if len(devices) == 1:
    return None
  return jax.make_mesh((1, len(devices)), (base.DATA_AXIS, base.MODEL_AXIS),
                       devices=list(devices))


def place(verifier, drafters: Sequence[Any], layout: Layout,
          devices: Sequence[jax.Device]) -> tuple[Any, tuple[Any, ...]]:
  """Puts built models on one replica's ``devices`` (the first
  ``model_parallel`` hold the verifier)."""
  if not layout.runnable:
    raise ValueError(f"layout {layout.describe()}: the decoding loop runs "
                     "both models in one program on one chip set")
  mesh = mesh_for(devices[:layout.model_parallel])
  if mesh is None:
    return (jax.device_put(verifier, devices[0]),
            tuple(jax.device_put(d, devices[0]) for d in drafters))
  drafters = tuple(sharding.shard_model(d, mesh) if layout.drafter == SHARDED
                   else sharding.replicate_model(d, mesh) for d in drafters)
  return sharding.shard_model(verifier, mesh), drafters


def record(layouts: Mapping[str, Layout]) -> None:
  """Remembers the chosen layout of each pair (by name) for this process."""
  _RECORDED.update(layouts)


def recorded(pair_name: str) -> Layout | None:
  return _RECORDED.get(pair_name)


def recorded_all() -> dict[str, dict[str, Any]]:
  """Pair name -> ``Layout.as_dict()``, for provenance."""
  return {name: layout.as_dict() for name, layout in _RECORDED.items()}
