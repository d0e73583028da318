"""``sweep --executor ray`` on a local Ray cluster (loopback only).

Two nodes of one CPU each are started and stopped by the module fixture
(``ray.cluster_utils.Cluster``, every address 127.0.0.1): two slots, each a
whole node. The scheduling test runs a model-free job; the sweep tests run
the smoke experiment (``tests/test_runner.py``'s fast bindings).
"""

import json
import os
import signal
import threading
import time

import pytest

# Loopback only: without this, Ray turns 127.0.0.1 into the host's own
# address (read when ray is imported, so set before).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from harness.__main__ import main  # pylint: disable=g-import-not-at-top,wrong-import-position
from harness.results import store as store_lib  # pylint: disable=wrong-import-position
from harness.runner import ray_executor  # pylint: disable=wrong-import-position
from harness.testing import ray_jobs  # pylint: disable=wrong-import-position
from harness.testing import sweeps  # pylint: disable=wrong-import-position

ray = pytest.importorskip("ray")

REPO = sweeps.REPO
SMOKE = sweeps.SMOKE_GIN
FAST = list(sweeps.FAST_FLAGS)
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  """A head and a second node, 1 CPU each, on the loopback address."""
  from ray import cluster_utils  # pylint: disable=g-import-not-at-top
  os.environ.setdefault("PYTHONPATH", REPO)  # Workers import harness.
  local = cluster_utils.Cluster(
      initialize_head=True,
      head_node_args={"num_cpus": 1, "node_ip_address": LOOPBACK,
                      "include_dashboard": False})
  local.add_node(num_cpus=1, node_ip_address=LOOPBACK)
  local.wait_for_nodes()
  yield local
  if ray.is_initialized():
    ray.shutdown()
  local.shutdown()


def _closed_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind((LOOPBACK, 0))
    return s.getsockname()[1]


def test_an_unreachable_head_is_one_line_not_a_hang(tmp_path, capsys):
  port = _closed_port()
  with pytest.raises(ray_executor.NoSlotsError,
                     match=f"no Ray head answers at 127.0.0.1:{port}"):
    ray_executor.check_reachable(f"{LOOPBACK}:{port}")
  with pytest.raises(ray_executor.NoSlotsError, match="expected HOST:PORT"):
    ray_executor.check_reachable("head-without-port")
  ray_executor.check_reachable("auto")  # The local cluster: nothing to dial.
  # Through the command line: one line, a non-zero exit, nothing written
  # (this test runs before the module's cluster attaches the process).
  if ray.is_initialized():
    pytest.skip("this process is already attached to a cluster")
  code = main(["sweep", "--gin_file", SMOKE, "--no_progress", *FAST,
               f"--gin.RESULTS_DIR='{tmp_path}'", "--executor", "ray",
               "--ray_address", f"ray://{LOOPBACK}:{port}"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1 and len(err) == 1, err
  assert f"no Ray head answers at ray://{LOOPBACK}:{port}" in err[0]
  assert not list(tmp_path.glob("*/cells/*.json"))


def test_slots_cut_hosts_by_chips_and_cpus():
  gpu = {"NodeID": "a", "NodeManagerAddress": "10.0.0.1", "Alive": True,
         "Resources": {"CPU": 32.0, "GPU": 8.0}}
  cpu = {"NodeID": "b", "NodeManagerAddress": "10.0.0.2", "Alive": True,
         "Resources": {"CPU": 4.0}}
  dead = dict(cpu, NodeID="c", Alive=False)
  slots = ray_executor.slots_of([gpu, cpu, dead], chips=2)
  assert [(s.node_id, s.chips, s.cpus) for s in slots] == (
      [("a", 2, 8)] * 4 + [("b", 0, 4)])
  sets = [set(s.cpu_set) for s in slots[:4]]
  assert all(not a & b for i, a in enumerate(sets) for b in sets[i + 1:])
  assert slots[4].cpu_set is None  # A whole host: nothing to pin.
  whole = ray_executor.slots_of([gpu], chips=None)  # "auto": the host.
  assert [(s.chips, s.cpus) for s in whole] == [(8, 32)]


def test_a_unit_that_always_fails_is_reported_and_the_others_finish(
    cluster):
  ray_executor.connect(cluster.address)
  slots = ray_executor.slots_of(ray.nodes(), None)
  assert len(slots) == 2 and {s.node_ip for s in slots} == {LOOPBACK}
  units = [ray_jobs.FakeUnit("u1", ("a", "b")),
           ray_jobs.FakeUnit("bad", ("c", "d")),
           ray_jobs.FakeUnit("u3", ("e",))]
  done, events = {}, []

  def on_result(unit, item, result):
    assert item not in done  # Nothing is run twice.
    done[item] = result

  failed = ray_executor.schedule(
      units, ray_jobs.FailingJob(frozenset({"c"})), slots,
      lambda unit: [i for i in unit.items if i not in done], on_result,
      attempts=3, report=lambda event, unit: events.append((event,
                                                            unit.name)))
  assert failed == [("bad", "RuntimeError: c always fails")]
  assert sorted(done) == ["a", "b", "e"]  # "d" waits behind "c".
  assert events.count(("retry", "bad")) == 2
  assert ("failed", "bad") in events
  assert {e for e in events if e[0] == "done"} == {("done", "u1"),
                                                  ("done", "u3")}


def _sweep(results, *extra):
  return main(["sweep", "--gin_file", SMOKE, "--no_progress",
               f"--gin.RESULTS_DIR='{results}'", *FAST, *extra])


def _cells(exp_dir):
  """{cell id: (summary, records)}; checks every cell's checksum."""
  store = store_lib.ResultsStore(os.path.dirname(exp_dir),
                                 os.path.basename(exp_dir))
  out = {}
  for summary in store.summaries():
    assert store.check_cell(summary["cell_id"]) is None
    out[summary["cell_id"]] = (summary, store.read_records(
        summary["cell_id"]))
  names = os.listdir(os.path.join(exp_dir, "cells"))
  assert not [n for n in names if n.startswith(".tmp")]
  assert len(names) == 2 * len(out)  # A .json and a .jsonl per cell, once.
  return out


def _untimed(records):
  return [{k: v for k, v in r.items() if "times" not in k
           and "modeled" not in k and k != "ref_first"} for r in records]


@pytest.mark.slow  # ~1-2 min on 2 cores: a local sweep and a Ray sweep
def test_smoke_over_ray_writes_what_the_local_executor_writes(
    cluster, tmp_path, capsys):
  assert _sweep(tmp_path / "local") == 0
  assert _sweep(tmp_path / "ray", "--executor", "ray", "--ray_address",
                cluster.address) == 0
  out = capsys.readouterr().out
  assert "ray: 4 units on 2 slots" in out and "0 remaining of 4" in out
  local = _cells(str(tmp_path / "local" / "smoke"))
  remote = _cells(str(tmp_path / "ray" / "smoke"))
  assert sorted(local) == sorted(remote) and len(local) == 4
  for cell_id, (summary, records) in remote.items():
    assert summary["quality"] == local[cell_id][0]["quality"]
    assert summary["records"]["count"] == local[cell_id][0]["records"][
        "count"] == len(records)
    assert _untimed(records) == _untimed(local[cell_id][1])
    placement = summary["provenance"]["placement"]
    assert placement["executor"] == "ray" and placement["attempt"] == 1
    assert placement["node_ip"] == LOOPBACK and placement["cpus"] == 1
    assert local[cell_id][0]["provenance"]["placement"] == {
        "executor": "local"}
  nodes = {s["provenance"]["placement"]["node_id"]
           for s, _ in remote.values()}
  assert len(nodes) == 2  # Both nodes ran units.


@pytest.mark.slow  # ~1 min on 2 cores
def test_a_worker_killed_mid_unit_is_retried_and_no_cell_is_lost(
    cluster, tmp_path, capsys):
  results = tmp_path / "ray"
  cells_dir = results / "smoke" / "cells"
  code = []
  sweep = threading.Thread(target=lambda: code.append(_sweep(
      results, "--executor", "ray", "--ray_address", cluster.address,
      "--unit_cells", "2")))
  sweep.start()
  deadline = time.time() + 300
  first = []
  while time.time() < deadline and not first:
    first = sorted(cells_dir.glob("*.json")) if cells_dir.exists() else []
    time.sleep(0.02)
  assert first, "no cell finished"
  killed = json.loads(first[0].read_text())["provenance"]["placement"]
  os.kill(killed["pid"], signal.SIGKILL)  # Mid-unit: a cell of 2 is done.
  before = len(list(cells_dir.glob("*.json")))
  sweep.join(timeout=600)
  assert code == [0]
  out = capsys.readouterr().out
  assert f"unit retry: {killed['unit']}" in out
  cells = _cells(str(results / "smoke"))
  assert len(cells) == 4  # Every cell exactly once, checksums valid.
  placements = [s["provenance"]["placement"] for s, _ in cells.values()]
  retried = [p for p in placements if p["attempt"] == 2]
  assert len(retried) == 1 and retried[0]["unit"] == killed["unit"]
  assert retried[0]["node_id"] != killed["node_id"]  # Elsewhere.
  print(f"kill-and-retry: {before} cells written before the kill, "
        f"{len(cells) - before} after, {len(retried)} cell rerun on "
        f"another node, {len(cells)} cells in all, each once")


def test_auto_pairs_take_the_placements_chips_per_replica():
  import types
  from harness.models import layout
  auto = types.SimpleNamespace(name="p", model_parallel="auto")
  wide = types.SimpleNamespace(name="q", model_parallel=2)
  lays = {"p": layout.Layout(1, replicas=8)}
  assert ray_executor.chips_per_unit([auto], lays) == 1
  assert ray_executor.chips_per_unit([auto, wide], lays) == 2
  assert ray_executor.chips_per_unit([auto], {}) is None  # CPU driver
  own = {"p": layout.Layout(4, layout.OWN_CHIP, replicas=1)}
  assert ray_executor.chips_per_unit([auto], own) == 5
  gpu = {"NodeID": "a", "NodeManagerAddress": "10.0.0.1", "Alive": True,
         "Resources": {"CPU": 32.0, "GPU": 8.0}}
  slots = ray_executor.slots_of([gpu], ray_executor.chips_per_unit(
      [auto], lays))
  assert [(s.chips, s.cpus) for s in slots] == [(1, 4)] * 8


def test_a_worker_confined_to_its_chips_uses_them_all():
  import jax
  from harness.models import layout
  lay = layout.Layout(len(jax.local_devices()), replicas=4)
  assert layout.local_chip_set(lay) == list(jax.local_devices())

