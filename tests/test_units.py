"""Units of work and dealing them over shards (``cells.units``, ``deal``)."""

import dataclasses

import pytest

from harness.runner import cells as cells_lib
from harness.runner import gin_config
from harness.runner import runner
from harness.results import schema

SMOKE = "experiments/smoke.gin"
BINDINGS = ["METHODS=[@spec_decode_lossy/MethodGrid()]",
            "spec_decode_lossy/MethodGrid.alphas=[0.0, 0.5, 1.0]",
            "TEMPERATURES=[0.0, 1.0]", "GAMMAS=[3, 5]"]


def _cells(*extra):
  exp, _ = gin_config.parse([SMOKE], BINDINGS + list(extra))
  return exp, cells_lib.build_cells(exp)


def test_paired_units_are_cells_and_unpaired_units_are_groups():
  _, cells = _cells()
  paired = cells_lib.units(cells, paired=True)
  assert [u.cells for u in paired] == [(c,) for c in cells]
  assert cells_lib.units(cells, paired=True, batch=2)[0].name.endswith(
      "(+1 cells)")
  unpaired = cells_lib.units(cells, paired=False)
  assert len(unpaired) == 2  # One group per temperature, references first.
  for unit in unpaired:
    assert [c.role for c in unit.cells[:2]] == [
        schema.Role.REFERENCE_LARGE, schema.Role.REFERENCE_SMALL]
    assert len({cells_lib.group_key(c) for c in unit.cells}) == 1
  with pytest.raises(ValueError, match="at least 1"):
    cells_lib.units(cells, paired=True, batch=0)


def test_dealing_balances_estimated_hours_and_keeps_every_cell_once():
  exp, cells = _cells()
  cost = runner.unit_cost(exp.latency_protocol)
  units = cells_lib.units(cells, paired=True)
  for count in (2, 3, 4):
    shards = cells_lib.deal_units(units, count, cost)
    ids = [c.cell_id for shard in shards for u in shard for c in u.cells]
    assert sorted(ids) == sorted(c.cell_id for c in cells)
    loads = [sum(cost(u) for u in shard) for shard in shards]
    # Greedy largest-first: no shard exceeds the lightest by more than its
    # largest unit.
    assert max(loads) - min(loads) <= max(cost(u) for u in units) + 1e-9
    for shard in shards:  # Run order kept inside a shard.
      order = [cells.index(u.cells[0]) for u in shard]
      assert order == sorted(order)
  # 16 cells over 4 shards: paired references are their own units, so
  # no shard carries a whole group (the old dealing gave 8, 8, 0, 0).
  sizes = sorted(len(s) for s in cells_lib.deal_units(units, 4, cost))
  assert sizes[0] >= 3 and sum(sizes) == len(cells)


def test_an_empty_shard_is_an_error():
  exp, cells = _cells()
  units = cells_lib.units(cells, paired=False)  # 2 groups.
  with pytest.raises(cells_lib.EmptyShardError,
                     match="3 shards for 2 units of work: shard"):
    cells_lib.deal_units(units, 3)
  # The estimate of a busiest host may see an empty shard; a run may not.
  assert cells_lib.deal(cells, 3)[2] == []
  with pytest.raises(cells_lib.EmptyShardError):
    runner.plan(dataclasses.replace(exp, latency_protocol="unpaired"),
                runner.RunOptions(shard=cells_lib.Shard(2, 3)))


def test_cli_empty_shard_is_one_line(capsys, tmp_path):
  from harness.__main__ import main  # pylint: disable=g-import-not-at-top
  code = main(["sweep", "--gin_file", SMOKE, "--dry_run", "--shard", "0/99",
               f"--gin.RESULTS_DIR='{tmp_path}'"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and "99 shards for" in err[0], err


def test_cli_ray_without_ray_names_the_extra(capsys, monkeypatch, tmp_path):
  import sys  # pylint: disable=g-import-not-at-top
  from harness.__main__ import main  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
  code = main(["sweep", "--gin_file", SMOKE, "--executor", "ray",
               f"--gin.RESULTS_DIR='{tmp_path}'"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1, err
  assert "pip install -e '.[ray]'" in err[0]
