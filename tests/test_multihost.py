"""Group-sharded sweeps over simulated hosts merge into the unsharded result."""

import json
import os

import pytest

from harness.__main__ import main
from harness.runner import cells as cells_lib
from harness.runner import gin_config
from harness.results import schema
from harness.results import store as store_lib
from harness.runner import multihost

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "experiments", "smoke.gin")
# 2 (T) groups of 2 references + 2 lossy cells; tiny and short.
FAST = ["--gin.METHODS=[@spec_decode_lossy/MethodGrid()]",
        "--gin.spec_decode_lossy/MethodGrid.alphas=[0.0, 1.0]",
        "--gin.multi30k_ende/TaskRun.num_examples=3",
        "--gin.TEMPERATURES=[0.0, 1.0]",
        "--gin.MAX_DECODE_LEN=6", "--gin.CALIBRATION_CALLS=2"]


def _experiment(*extra):
  exp, _ = gin_config.parse([SMOKE], [b.removeprefix("--gin.")
                                      for b in FAST + list(extra)])
  return exp


def test_deal_keeps_groups_whole_and_balanced():
  exp = _experiment("--gin.TEMPERATURES=[0.0, 0.5, 1.0]",
                    "--gin.TOP_PS=[0.5, 1.0]")
  cells = cells_lib.build_cells(exp)
  shards = [cells_lib.Shard(i, 4).select(cells) for i in range(4)]
  assert sorted(c.cell_id for s in shards for c in s) == sorted(
      c.cell_id for c in cells)
  for shard in shards:
    keys = {cells_lib.group_key(c) for c in shard}
    # Every group on this shard is whole, references included.
    assert sum(len([c for c in cells if cells_lib.group_key(c) == k])
               for k in keys) == len(shard)
    refs = {c.cell_id for c in shard if c.role is not schema.Role.METHOD}
    assert all(cells_lib.reference_for(c).cell_id in refs for c in shard)
  # 6 equal groups over 4 shards: 2, 2, 1, 1 groups.
  assert sorted(len(s) for s in shards) == [4, 4, 8, 8]


def _sweep(results, *extra):
  return main(["sweep", "--gin_file", SMOKE, "--no_progress",
               f"--gin.RESULTS_DIR='{results}'", *FAST, *extra])


def _summaries(exp_dir):
  out = {}
  for name in sorted(os.listdir(os.path.join(exp_dir, "cells"))):
    if name.endswith(".json"):
      with open(os.path.join(exp_dir, "cells", name)) as f:
        out[name[:-5]] = json.load(f)
  return out


@pytest.mark.slow
def test_two_hosts_gather_into_the_unsharded_table2(tmp_path, capsys):
  from harness import report  # pylint: disable=g-import-not-at-top
  assert _sweep(tmp_path / "one") == 0
  hosts = []
  for i in range(2):  # Two simulated hosts, one after the other.
    shard = cells_lib.Shard(i, 2)
    root = multihost.host_results_dir(str(tmp_path / "results"), shard)
    assert _sweep(root, "--shard", f"{i}/2") == 0
    hosts.append(os.path.join(root, "smoke"))
    # Each host measured its own references: no relative latency missing.
    host = _summaries(hosts[-1])
    assert len(host) == 4
    assert all(s["relative_latency"] is not None for s in host.values())
  merged = str(tmp_path / "merged" / "smoke")
  assert main(["gather", *hosts, "--into", merged]) == 0
  assert "gathered" in capsys.readouterr().out
  one = _summaries(str(tmp_path / "one" / "smoke"))
  both = _summaries(merged)
  assert sorted(both) == sorted(one)
  assert {k: s["quality"] for k, s in both.items()} == {
      k: s["quality"] for k, s in one.items()}
  with open(os.path.join(merged, "manifest.json")) as f:
    assert sorted(json.load(f)["cell_ids"]) == sorted(one)
  tables = [report.build_report(d, bootstrap=0).table
            for d in (str(tmp_path / "one" / "smoke"), merged)]
  # Table 2's rows and its quality numbers (entries chosen by measured
  # latency, such as best_quality, depend on timing and are not compared).
  quality = ["task", "metric", "method", "large_quality", "small_quality"]
  assert sorted(tables[0].columns) == sorted(tables[1].columns)
  assert tables[0]["large_quality"].notna().all()
  assert tables[0][quality].sort_values(quality).reset_index(drop=True).equals(
      tables[1][quality].sort_values(quality).reset_index(drop=True))


def _cell(root, cell_id, text):
  """A finished cell of ``text`` records in ``root``'s store."""
  store = store_lib.ResultsStore(str(root.parent), root.name)
  digest = store.write_records(cell_id, [{"x": text}])
  cell = dict.fromkeys(("task", "pair", "temperature", "top_p",
                        "max_decode_len", "seed", "num_examples",
                        "num_latency_examples"), 0)
  store.write_summary({"cell_id": cell_id, "records": digest,
                       "cell": dict(cell, role="method"),
                       "relative_latency": 1.0})
  return store


def test_gather_keeps_one_intact_copy_of_a_re_dealt_cell(tmp_path):
  # Host a finished x and y; y's records were damaged afterwards. The
  # lost shard was re-dealt to host b, which ran x and y again.
  a = _cell(tmp_path / "a" / "smoke", "x", "a1")
  _cell(tmp_path / "a" / "smoke", "y", "a2")
  with open(a.records_path("y"), "a") as f:
    f.write("{}\n")
  _cell(tmp_path / "b" / "smoke", "x", "b1")
  _cell(tmp_path / "b" / "smoke", "y", "b2")
  into = tmp_path / "m" / "smoke"
  multihost.gather([str(tmp_path / h / "smoke") for h in "ab"], str(into))
  merged = store_lib.ResultsStore(str(into.parent), "smoke")
  assert sorted(os.listdir(merged.cells_dir)) == [
      "x.json", "x.jsonl", "y.json", "y.jsonl"]
  assert merged.read_records("x") == [{"x": "a1"}]  # The first copy.
  assert merged.read_records("y") == [{"x": "b2"}]  # The intact copy.
  assert merged.check_cell("x") is None and merged.check_cell("y") is None


def test_gather_refuses_a_cell_without_an_intact_copy_and_other_conflicts(
    tmp_path):
  a = _cell(tmp_path / "a" / "smoke", "x", "a1")
  with open(a.records_path("x"), "a") as f:
    f.write("{}\n")
  with pytest.raises(ValueError, match="no intact copy"):
    multihost.gather([str(tmp_path / "a" / "smoke")], str(tmp_path / "m1"))
  for host, text in (("c", "1"), ("d", "2")):
    (tmp_path / host / "notes.txt").parent.mkdir(parents=True)
    (tmp_path / host / "notes.txt").write_text(text)
  with pytest.raises(ValueError, match="differs from"):
    multihost.gather([str(tmp_path / "c"), str(tmp_path / "d")],
                     str(tmp_path / "m2"))


_MESH_SCRIPT = """
import jax
import jax.numpy as jnp
from harness.models import configs, chips
from harness.runner import pairs

assert jax.device_count() == 8, jax.devices()
every = jax.devices()
# One process: the mesh spans every device, as before.
mesh = pairs.local_mesh(4)
assert dict(mesh.shape) == {"data": 2, "model": 4}, mesh.shape
assert set(mesh.devices.flat) == set(every)
# A host of a 2-process run sees 4 of the 8 devices: its models stay there.
jax.local_devices = lambda *a, **k: every[:4]
mesh = pairs.local_mesh(2)
assert dict(mesh.shape) == {"data": 2, "model": 2}, mesh.shape
assert set(mesh.devices.flat) == set(every[:4])
# Model parallelism is checked against the local devices only.
tiny = configs.TINY_T5
assert chips.present_model_parallel(4, tiny, [], jnp.float32) == 4
try:
  chips.present_model_parallel(8, tiny, [], jnp.float32)
  raise AssertionError("8-way accepted on a host of 4 devices")
except ValueError as err:
  assert "does not divide the 4 devices" in str(err), err
""".strip()


def test_model_mesh_uses_this_hosts_devices():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, "-c", _MESH_SCRIPT], env=env,
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
