"""Pre-flight checks: ``--dry_run``'s gate, and the checks before every run.

``--dry_run`` runs :func:`dry_run`; a real run runs the same :func:`check`
on this machine's devices before its first cell (and refuses, listing every
problem), which also settles the experiment's sample policy.

In seconds and without reading weights, :func:`check` collects EVERY problem
of an experiment on a (real or simulated) topology, and the command exits
non-zero when there is any:

* sandbox: a task scored by running generated code (MBPP pass@1) needs a
  kernel-enforced launcher or the explicit opt-in
  (``harness.metrics.sandbox``; the problem is the sandbox's own message);
* data: per task and source, the bundled files or the prepared TFDS dataset
  under ``DATA_DIR`` (its ``dataset_info.json``), and sample sizes against
  what the source holds (``Experiment.sample_policy``: "refuse" lists a
  problem, "cap" lowers the size with a warning naming task, source, asked
  and available);
* checkpoints: each directory, its ``config.json`` (parsed) and a weights
  file; a GGUF file or T5X directory through ``open_checkpoint`` (metadata
  only);
* results: the results directory (``results_dir/name``) is a directory,
  or can be made one, and is writable; a bucket path (``gs://``) needs a
  known scheme and its library (``harness.results.storage``);
* vocabulary agreement of drafter and verifier (from the configs, and the
  tokenizer files' sha256 when both are present);
* per-chip memory: weights (shapes from ``jax.eval_shape`` on the model
  constructors; the verifier split ``model_parallel`` ways as
  ``harness.models.sharding`` splits it, the drafter replicated) + KV caches
  at the task's maximum lengths (input + output + γ + 1 positions; T5 also
  its cross-attention cache) + a margin (``MARGIN_FRACTION`` of that plus
  ``MARGIN_BYTES``), against the chip's memory;
* device count against ``model_parallel`` (a multiple of it; on several
  hosts each host runs its own cells, so at most one host's devices);
  "auto" (the default) is chosen as the real run chooses it
  (``harness.models.chips.choose_model_parallel`` over one host's
  devices) and printed, or its one-line refusal listed as a problem.

The time estimate (``harness.runner.estimate``) uses the topology's
bandwidth and FLOPs per chip (``harness.models.chips.CHIPS``) and the split.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
from typing import Any, TextIO

import jax
import jax.numpy as jnp

from harness import metrics
from harness import tasks
from harness.edge import errors
from harness.models import chips
from harness.models import layout as layout_lib
from harness.models import loading
from harness.models import t5x
from harness.models import weights
from harness.results import storage
from harness.runner import cells as cells_lib
from harness.runner import config as cfg
from harness.runner import topologies
from harness.runner import estimate as estimate_lib
from harness.runner import execute
from harness.runner import pairs
from harness.runner import placement

MARGIN_FRACTION = 0.2  # Activations, logits, XLA workspace, fragmentation.
MARGIN_BYTES = 1 * chips.GIB
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                 "pytorch_model.bin", "pytorch_model.bin.index.json",
                 "flax_model.msgpack")
_TOKENIZER_FILES = ("tokenizer.model", "spiece.model")


@dataclasses.dataclass
class Findings:
  """What the dry run found.

  Attributes:
    problems: (kind, one line) that make the run refuse.
    warnings: one line each, the run still proceeds.
    memory: lines of the per-chip memory table.
    parallel: lines per pair: its layout ("auto" resolved) and, where
      there was a choice, every candidate's estimate.
    placements: pair name -> its chosen layout.
    experiment: the experiment after the sample policy (sizes capped).
  """
  problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)
  memory: list[str] = dataclasses.field(default_factory=list)
  parallel: list[str] = dataclasses.field(default_factory=list)
  placements: dict[str, layout_lib.Layout] = dataclasses.field(
      default_factory=dict)
  experiment: cfg.Experiment | None = None

  def add(self, kind: str, message: str) -> None:
    self.problems.append((kind, message))


# --- Data -------------------------------------------------------------------


def default_tfds_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR",
                        os.path.expanduser("~/tensorflow_datasets"))


def _check_data(run: cfg.TaskRun, found: Findings) -> cfg.TaskRun:
  """Checks a task's data; returns the run with the sample policy applied."""
  spec = tasks.get_task(run.task)
  tfds_source = run.source is tasks.Source.TFDS and spec.tfds is not None
  where = f"{run.task} (source {run.source.value})"
  data_dir = None
  if tfds_source:
    data_dir = run.data_dir or default_tfds_dir()
    if "://" in data_dir:  # gs:// and other remote stores: not checked here.
      found.warnings.append(f"{where}: DATA_DIR {data_dir} is remote; its "
                            "data and sizes are not checked")
      return run
    if not os.path.isdir(data_dir):
      found.add("data", f"{where}: DATA_DIR {data_dir} does not exist "
                "(prepare it with `tfds build`, docs/running.md)")
      return run
  try:
    available = tasks.available_examples(run.task, run.source.value,
                                         data_dir)
  except (tasks.DataError, OSError, KeyError) as err:
    found.add("data", f"{where}: {str(err).splitlines()[0]}")
    return run
  if run.num_examples <= available:
    return run
  policy = found.experiment.sample_policy if found.experiment else (
      cfg.SamplePolicy.REFUSE)
  text = (f"{where}: num_examples={run.num_examples} but the source holds "
          f"{available}")
  if policy is cfg.SamplePolicy.REFUSE:
    found.add("sample size", f"{text} (lower it, or set "
              "SAMPLE_POLICY=\"cap\")")
    return run
  found.warnings.append(f"{text}: capped to {available}")
  latency = run.num_latency_examples
  return dataclasses.replace(
      run, num_examples=available,
      num_latency_examples=None if latency is None else min(latency,
                                                            available))


def apply_sample_policy(exp: cfg.Experiment) -> tuple[cfg.Experiment,
                                                      Findings]:
  """Checks every task's data; returns the (capped) experiment and findings."""
  found = Findings(experiment=exp)
  runs = tuple(_check_data(run, found) for run in exp.tasks)
  found.experiment = dataclasses.replace(exp, tasks=runs)
  return found.experiment, found


# --- Sandbox ------------------------------------------------------------------

def _code_metrics(task: str) -> list[str]:
  """The task's metrics that execute generated code (registered with
  ``runs_code=True`` in ``harness.metrics``)."""
  return [m for m in tasks.get_task(task).metrics
          if metrics.get_metric(m).runs_code]


def check_sandbox(exp: cfg.Experiment, found: Findings,
                  allow_unisolated: bool = False) -> None:
  """A task scored by running generated code (a metric registered with
  ``runs_code``, e.g. MBPP's pass@1) needs a kernel-enforced sandbox
  launcher, or the explicit opt-in
  (``harness.metrics.sandbox.require_isolation``); else a problem with the
  sandbox's own message, naming what is missing."""
  runs = {run.task: _code_metrics(run.task) for run in exp.tasks}
  runs = {task: names for task, names in runs.items() if names}
  if not runs:
    return
  from harness.metrics import sandbox  # pylint: disable=g-import-not-at-top
  try:
    sandbox.require_isolation(allow_unisolated)
  except sandbox.SandboxUnavailable as err:
    named = ", ".join(f"{task} ({', '.join(names)})"
                      for task, names in runs.items())
    found.add("sandbox", f"{named}: {err}")


def pre_run_checks(exp: cfg.Experiment, allow_unisolated: bool = False
                   ) -> tuple[cfg.Experiment, Findings]:
  """The checks that need no model: data and sample sizes
  (``apply_sample_policy``), the code sandbox (``check_sandbox``, with
  ``--allow_unisolated_mbpp``'s choice) and the results directory
  (``check_results_dir``)."""
  exp, found = apply_sample_policy(exp)
  check_sandbox(exp, found, allow_unisolated)
  check_results_dir(exp, found)
  return exp, found


# --- Results directory ------------------------------------------------------


def check_results_dir(exp: cfg.Experiment, found: Findings) -> None:
  """``results_dir/name`` must be a writable directory, or its nearest
  existing ancestor one (the run creates the rest). On a bucket
  (``harness.results.storage``): a known scheme whose library is
  installed, and a listing that succeeds; writability is left to the
  first write (a warning says so)."""
  path = storage.join(exp.results_dir, exp.name)
  try:
    storage.check(exp.results_dir, "RESULTS_DIR")
  except (ValueError, ImportError) as err:
    found.add("results", str(err))
    return
  if storage.is_remote(path):
    try:  # Reachable, with credentials (a missing directory is made).
      storage.listdir(path)
    except Exception as err:  # pylint: disable=broad-except
      found.add("results", f"{path}: cannot be read "
                f"({type(err).__name__}: {errors.first_line(err)})")
      return
    found.warnings.append(f"results {path}: remote ({storage.scheme(path)}"
                          "://); whether it is writable is not checked "
                          "before the run")
    return
  probe = os.path.abspath(storage.local_path(path))
  while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    found.add("results", f"{path}: {probe} is not a directory")
  elif not os.access(probe, os.W_OK | os.X_OK):
    found.add("results", f"{path}: {probe} is not writable")


# --- Checkpoints and configs ----------------------------------------------


def _sha(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Resolved:
  """A model of a pair: its config (or None) and tokenizer-file hash."""
  config: Any
  tokenizer_sha: str | None = None


def _checkpoint(path: str, role: str, size: str | None,
                found: Findings) -> Resolved:
  """Checks a checkpoint directory; falls back to ``size`` for shapes."""
  fallback = _size_config(size)
  where = f"{role} checkpoint {path}"
  directory = pairs.resolve(os.path.expanduser(path))
  config_path = os.path.join(directory, loading.CONFIG_FILE)
  if not os.path.exists(config_path) and (
      os.path.isfile(directory) or t5x.is_t5x_checkpoint(directory)
      or glob.glob(os.path.join(directory, "*.gguf"))):
    return _self_described(directory, where, fallback, found)
  if not os.path.isdir(directory):
    found.add("checkpoint", f"{where}: no such directory")
    return Resolved(fallback)
  try:
    with open(config_path, encoding="utf-8") as f:
      config = loading.config_from_hf(json.load(f))
  except FileNotFoundError:
    found.add("checkpoint", f"{where}: no config.json")
    return Resolved(fallback)
  except (ValueError, KeyError, TypeError) as err:
    found.add("checkpoint", f"{config_path}: {err}")
    return Resolved(fallback)
  if not any(os.path.exists(os.path.join(directory, w))
             for w in _WEIGHT_FILES) and not glob.glob(
                 os.path.join(directory, "*.gguf")):
    found.add("checkpoint", f"{where}: no weights file (one of "
              f"{', '.join(_WEIGHT_FILES)}, *.gguf)")
  tokenizer = [os.path.join(directory, t) for t in _TOKENIZER_FILES
               if os.path.exists(os.path.join(directory, t))]
  return Resolved(config, _sha(tokenizer[0]) if tokenizer else None)


def _self_described(path: str, where: str, fallback,
                    found: Findings) -> Resolved:
  """A GGUF file (or a directory holding one) or a T5X checkpoint
  directory: the architecture is inside, read by
  ``harness.models.open_checkpoint`` (metadata only, no weight)."""
  try:
    return Resolved(loading.open_checkpoint(path,
                                            require_tokenizer=False).config)
  except (OSError, ValueError, KeyError) as err:
    text = str(err.args[0]) if isinstance(err, KeyError) else str(err)
    found.add("checkpoint", f"{where}: {text.splitlines()[0]}")
    return Resolved(fallback)


def _size_config(size: str | None):
  if not size:
    return None
  try:
    return pairs.size_config(size)
  except KeyError:
    return None


def resolve_pair(pair: cfg.ModelPair, found: Findings
                 ) -> dict[str, Resolved]:
  """{"drafter": …, "verifier": …, "extra drafter i": …} configs; problems
  added to ``found``."""
  out = {}
  for role in ("drafter", "verifier"):
    name = getattr(pair, role)
    if pair.kind is cfg.PairKind.RANDOM:
      config = _size_config(name)
      if config is None:
        found.add("model", f"pair {pair.name}: {role} size {name!r} unknown")
      out[role] = Resolved(config)
    else:
      out[role] = _checkpoint(name, role, getattr(pair, f"{role}_size"),
                              found)
  for i, name in enumerate(pair.extra_drafters):
    role = f"extra drafter {i + 1}"
    if pair.kind is cfg.PairKind.RANDOM:
      out[role] = Resolved(_size_config(name))
      if out[role].config is None:
        found.add("model", f"pair {pair.name}: {role} size {name!r} unknown")
    else:
      out[role] = _checkpoint(name, role, None, found)
  _check_vocab(pair, out, found)
  return out


def _check_vocab(pair: cfg.ModelPair, models: dict[str, Resolved],
                 found: Findings) -> None:
  small, large = models["drafter"], models["verifier"]
  if small.config is None or large.config is None:
    return
  if small.config.vocab_size != large.config.vocab_size:
    found.add("vocabulary", f"pair {pair.name}: drafter vocab_size "
              f"{small.config.vocab_size} != verifier vocab_size "
              f"{large.config.vocab_size}")
  elif small.tokenizer_sha and large.tokenizer_sha and (
      small.tokenizer_sha != large.tokenizer_sha):
    found.add("vocabulary", f"pair {pair.name}: drafter and verifier "
              "tokenizer files differ (sha256 "
              f"{small.tokenizer_sha[:12]} vs {large.tokenizer_sha[:12]})")


# --- Memory -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Footprint:
  """A model's memory and per-step traffic on one chip.

  Attributes:
    num_params: parameters in all.
    weight_bytes: weights held by one chip.
    kv_bytes: KV cache held by one chip at the task's maximum lengths.
    num_layers: layers run per decoding step.
    split: ways the model is split (1 = replicated).
    step_weight_bytes: weights one decoding step reads on one chip (T5:
      the decoder's; the encoder runs once per decode, in prefill).
    prefill_flops: FLOPs of one decode's prefill on one chip (the prompt
      through every layer; T5: the encoder over the prompt and one decoder
      position), at a prompt of ``input_len`` tokens.
    input_len: the prompt length ``prefill_flops`` is for (the task's
      maximum).
    prefill_flops_per_token: what each prompt token adds to
      ``prefill_flops`` (:meth:`prefill_flops_at`).
  """
  num_params: int
  weight_bytes: float
  kv_bytes: float
  num_layers: int
  split: int
  step_weight_bytes: float = 0.0
  prefill_flops: float = 0.0
  input_len: int = 0
  prefill_flops_per_token: float = 0.0

  def prefill_flops_at(self, input_len: int | None) -> float:
    """Prefill FLOPs at a prompt of ``input_len`` tokens (None: the
    maximum this footprint was sized for)."""
    if input_len is None:
      return self.prefill_flops
    return self.prefill_flops - self.prefill_flops_per_token * (
        self.input_len - min(input_len, self.input_len))

  @property
  def bytes(self) -> float:
    """Bytes held on one chip: weights and KV caches."""
    return self.weight_bytes + self.kv_bytes

  @property
  def step_bytes(self) -> float:
    """Bytes one decoding step reads on one chip."""
    return (self.step_weight_bytes or self.weight_bytes) + self.kv_bytes


def footprint(config, dtype: cfg.DType, split: int, input_len: int,
              output_len: int, gamma: int) -> Footprint:
  """Per-chip weights and KV cache of ``config`` split ``split`` ways."""
  from harness import models  # pylint: disable=g-import-not-at-top
  dtype = pairs.DTYPES[dtype]
  size = jnp.dtype(dtype).itemsize
  total = sum(math.prod(leaf.shape)
              for leaf in jax.tree.leaves(weights.param_shapes(config)))
  positions = input_len + output_len + gamma + 1
  if isinstance(config, models.T5Config):
    heads, width, layers = config.num_heads, config.d_kv, (
        config.num_decoder_layers)
    # Decoder self-attention: start token + output + scratch (the encoder
    # bucket does not size it); cross-attention: the encoder input.
    kv = 2 * heads * width * ((output_len + gamma + 3) + input_len) * layers
    depth = layers
  else:
    heads, width, layers = config.num_kv_heads, config.head_dim, (
        config.num_layers)
    kv = 2 * heads * width * positions * layers
    depth = layers
  kv_split = split if heads % split == 0 else 1
  weight_bytes = chips.weight_bytes_per_chip(config, dtype, split)
  step_weights, per_token = weight_bytes, 2.0 * total
  prefill = per_token * input_len
  if isinstance(config, models.T5Config):
    encoder = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(
        weights.param_shapes(config)["encoder"]))
    step_weights = weight_bytes * (total - encoder) / total
    per_token = 2.0 * encoder
    prefill = per_token * input_len + 2.0 * (total - encoder)
  return Footprint(total, weight_bytes, kv * size / kv_split, depth, split,
                   step_weights, prefill / split, input_len,
                   per_token / split)


def _need(pair: cfg.ModelPair, models: dict[str, Resolved],
          lay: layout_lib.Layout, exp: cfg.Experiment
          ) -> tuple[float, dict[str, Footprint], list[str]]:
  """(the fullest chip's bytes with the margin, the worst task's
  {"drafter", "verifier"} footprints, one memory line per task) of
  ``pair`` laid out as ``lay``. A model of unknown size counts nothing."""
  gamma = max(exp.gammas)
  worst, worst_total, lines = {}, -1.0, []
  for run in exp.tasks:
    if (run.pair or exp.pair) != pair:
      continue
    spec = tasks.get_task(run.task)
    prints = {
        role: footprint(m.config, pair.dtype,
                        lay.model_parallel if role == "verifier"
                        else lay.drafter_split, spec.max_input_len,
                        run.decode_len(), gamma)
        for role, m in models.items() if m.config is not None}
    drafters = sum(p.bytes for r, p in prints.items() if r != "verifier")
    verifier = prints["verifier"].bytes
    chips_used = ([verifier, drafters] if lay.drafter == layout_lib.OWN_CHIP
                  else [verifier + drafters])
    total = max(u * (1 + MARGIN_FRACTION) + MARGIN_BYTES for u in chips_used)
    kv = sum(p.kv_bytes for p in prints.values())
    drafter = prints.get("drafter")
    small = (f"{_gib(drafter.weight_bytes)} drafter (1/{lay.drafter_split}"
             f"{', own chip' if lay.drafter == layout_lib.OWN_CHIP else ''})"
             if drafter else "drafter of unknown size")
    lines.append((run.task, total,
                  f"  {pair.name} × {run.task}: per chip weights "
                  f"{_gib(prints['verifier'].weight_bytes)} verifier (1/"
                  f"{lay.model_parallel}) + {small}, KV {_gib(kv)}, + margin"
                  f" = {_gib(total)}"))
    if total > worst_total:
      worst, worst_total = {r: prints[r] for r in ("drafter", "verifier")
                            if r in prints}, total
  return worst_total, worst, lines


def _explicit_problem(pair: cfg.ModelPair, topo: topologies.Topology
                      ) -> str | None:
  mp, per_host = pair.model_parallel, topo.devices_per_host
  if mp > topo.num_devices or topo.num_devices % mp:
    return (f"pair {pair.name}: model_parallel={mp} needs a multiple of "
            f"{mp} devices; {topo.describe()}")
  if mp > per_host:
    return (f"pair {pair.name}: model_parallel={mp} exceeds the {per_host} "
            f"devices of one host (each host runs its own cells); "
            f"{topo.describe()}")
  return None


def _refusal(pair: cfg.ModelPair, models: dict[str, Resolved],
             topo: topologies.Topology, options) -> str:
  """Why no "auto" layout fits, in one line."""
  drafters = [m.config for role, m in models.items()
              if role != "verifier" and m.config is not None]
  try:
    chips.choose_model_parallel(
        chips.AUTO, models["verifier"].config, drafters,
        pairs.DTYPES[pair.dtype], topo.devices_per_host,
        int(topo.kind.memory_bytes))
  except ValueError as err:
    return f"{err}; {topo.describe()}"
  least = min(options, key=lambda o: o.need_bytes)
  return (f"no layout fits: the smallest need, {least.layout.describe()}, "
          f"is {_gib(least.need_bytes)} per chip (weights + KV + margin) "
          f"but a {topo.kind.title} holds {_gib(topo.kind.memory_bytes)}; "
          f"{topo.describe()}")


def _place(pair: cfg.ModelPair, models: dict[str, Resolved],
           exp: cfg.Experiment, topo: topologies.Topology, found: Findings,
           price_all: bool) -> tuple[layout_lib.Layout | None,
                                     dict[str, Footprint]]:
  """The pair's layout on one host of ``topo`` (``harness.runner.placement``:
  "auto" the least estimated wall time, explicit settings as given), its
  memory lines and problems; (None, {}) when it cannot be decided."""
  explicit = pair.model_parallel != chips.AUTO
  problem = _explicit_problem(pair, topo) if explicit else None
  if problem:
    found.add("devices", problem)
  if problem or models["verifier"].config is None:
    return None, {}  # A missing model is already a problem.
  chosen_by = (f"model_parallel={pair.model_parallel}" if explicit
               else "auto")
  layouts = placement.candidates(topo.devices_per_host, pair.model_parallel,
                                 pair.drafter_placement, chosen_by)
  if not price_all:
    layouts = [lay for lay in layouts if lay.runnable] or layouts
  needs = {lay: _need(pair, models, lay, exp) for lay in layouts}
  cells = [c for c in cells_lib.build_cells(exp) if c.pair == pair]
  options = placement.evaluate(
      layouts, lambda lay: needs[lay][:2], topo.kind.memory_bytes, cells,
      topo.kind, exp.latency_protocol, topo.num_hosts)
  chosen = placement.choose(options)
  if chosen is None and explicit:
    chosen = next(o for o in options if o.layout.runnable)
  if chosen is None:
    found.add("devices", f"pair {pair.name}: model_parallel=\"auto\": "
              f"{_refusal(pair, models, topo, options)}")
    return None, {}
  lay = chosen.layout
  found.placements[pair.name] = lay
  head = (f"model_parallel=\"auto\" chose {lay.model_parallel}"
          if not explicit else f"model_parallel={lay.model_parallel}")
  found.parallel.append(f"  {pair.name}: {head} (of {topo.devices_per_host}"
                        f" devices per host): {lay.describe()}")
  if len(options) > 1:
    found.parallel.extend(placement.lines(options, chosen,
                                          topo.kind.memory_bytes))
  total, prints, lines = needs[lay]
  for task, need, line in lines:
    found.memory.append(f"{line} of {_gib(topo.kind.memory_bytes)}")
    if need > topo.kind.memory_bytes:
      found.add("memory", f"pair {pair.name} × {task}: needs {_gib(need)} "
                f"per chip (weights + KV + margin) but a {topo.kind.title} "
                f"holds {_gib(topo.kind.memory_bytes)}")
  return lay, prints


def _gib(n: float) -> str:
  return f"{n / chips.GIB:.2f} GiB"


# --- Entry point --------------------------------------------------------------


def check(exp: cfg.Experiment, topo: topologies.Topology,
          allow_unisolated: bool = False, price_all: bool = False
          ) -> tuple[Findings, dict[cfg.ModelPair, dict[str, Footprint]]]:
  """Every check of the module docstring; each pair's layout (in
  ``Findings.placements``) and footprints on it, for timing. ``price_all``
  prices every candidate layout (the dry run's listing); otherwise only
  when there is a choice to make."""
  exp, found = pre_run_checks(exp, allow_unisolated)
  prints = {}
  for pair in dict.fromkeys(run.pair or exp.pair for run in exp.tasks):
    models = resolve_pair(pair, found)
    _, prints[pair] = _place(pair, models, exp, topo, found, price_all)
  return found, prints


def dry_run(exp: cfg.Experiment, cells_for, topo: topologies.Topology,
            is_done, results_dir: str, out: TextIO,
            allow_unisolated: bool = False) -> int:
  """Prints the plan, the checks and the estimate; returns the exit code.

  Args:
    exp: the experiment.
    cells_for: experiment -> the cells this invocation runs.
    topo: the topology checked against.
    is_done: cell id -> whether its results exist.
    results_dir: printed.
    out: where to print.
    allow_unisolated: ``--allow_unisolated_mbpp`` (MBPP's sandbox opt-in).

  Returns:
    0 when nothing is wrong, ``PROBLEMS_EXIT`` otherwise.
  """
  found, prints = check(exp, topo, allow_unisolated, price_all=True)
  cells = cells_for(found.experiment)
  todo = [c for c in cells if not is_done(c.cell_id)]
  for cell in cells:
    mark = "done" if is_done(cell.cell_id) else "todo"
    print(f"{mark}  {execute.num_decodes(cell):6d} decodes  "
          f"{cell.cell_id}", file=out)
  print(f"topology: {topo.describe()}", file=out)
  print("placement (per pair on each host: replicas × chips the verifier is"
        " split over, drafter placement; * the choice; hours: the pair's "
        "cells with every replica busy, harness/runner/placement.py):",
        file=out)
  for line in found.parallel:
    print(line, file=out)
  print("per-chip memory (weights + KV caches at the task's maximum lengths"
        f" + {MARGIN_FRACTION:.0%} + {_gib(MARGIN_BYTES)}):", file=out)
  for line in found.memory:
    print(line, file=out)
  protocol = found.experiment.latency_protocol
  est = estimate_lib.estimate(todo, topo.kind, prints, protocol)
  ms = estimate_lib.milliseconds
  print(f"{len(cells)} cells ({len(cells) - len(todo)} done), "
        f"{est.num_decodes} decodes to run, estimated {est.seconds:.0f} s "
        f"({est.seconds / 3600:.2f} h; at most {est.seconds_max:.0f} s = "
        f"{est.seconds_max / 3600:.2f} h with every output at its maximum) "
        "one cell after another = decodes × (prefill + "
        "output length × step time) (verifier "
        f"{ms(est.prefill_s['verifier'])} + L × "
        f"{ms(est.step_s['verifier'])} ms, drafter "
        f"{ms(est.prefill_s['drafter'])} + L × "
        f"{ms(est.step_s['drafter'])} ms on {topo.kind.title}; "
        "harness/runner/estimate.py)", file=out)
  print(placement.wall_line(todo, found.placements, topo, prints, protocol),
        file=out)
  print(estimate_lib.assumptions(est, topo.kind), file=out)
  if topo.num_hosts > 1:
    shards = cells_lib.deal(todo, topo.num_hosts)
    slowest = max(estimate_lib.estimate(c, topo.kind, prints,
                                        protocol).seconds
                  for c in shards)
    print(f"over {topo.num_hosts} hosts (--distributed, whole (task, T, "
          f"top-P) groups per host): the busiest host about "
          f"{slowest / 3600:.2f} h", file=out)
  print(f"results: {results_dir}", file=out)
  for line in found.warnings:
    print(f"warning: {line}", file=out)
  for kind, line in found.problems:
    print(f"problem ({kind}): {line}", file=out)
  if found.problems:
    print(f"dry run: {len(found.problems)} problem(s); fix them before "
          "running", file=out)
    return PROBLEMS_EXIT
  print("dry run: no problems found", file=out)
  return 0


PROBLEMS_EXIT = errors.DRY_RUN_PROBLEMS_EXIT
