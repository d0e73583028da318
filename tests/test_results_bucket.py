"""Results in a bucket: fsspec's in-memory filesystem stands in for gs://.

A sweep into ``memory://`` writes its cells there, resumes from them, and
``report`` renders from them the same Table 2 as from a local copy; an
unknown scheme or a missing bucket library is one line, exit 2, before
anything runs (and nothing named ``foo:`` appears on the local disk).
"""

import os
import sys
import uuid

import fsspec
import pytest

from harness import report
from harness.__main__ import main
from harness.results import schema
from harness.results import storage
from harness.results import store as store_lib
from harness.runner import gin_config
from harness.runner import preflight
from harness.testing import sweeps

REPO = sweeps.REPO
SMOKE = sweeps.SMOKE_GIN
FAST = list(sweeps.FAST_FLAGS)


def _bucket() -> str:
  """A fresh directory of the (process-wide) in-memory filesystem."""
  return f"memory://bucket-{uuid.uuid4().hex[:8]}/results"


def _sweep(results, *extra):
  return main(["sweep", "--gin_file", SMOKE, "--no_progress",
               f"--gin.RESULTS_DIR='{results}'", *FAST, *extra])


def test_sweep_and_report_round_trip_through_a_bucket(tmp_path, capsys,
                                                       monkeypatch):
  monkeypatch.chdir(tmp_path)  # Nothing may land on the local disk.
  bucket = _bucket()
  assert _sweep(bucket) == 0
  out = capsys.readouterr().out
  exp_dir = f"{bucket}/smoke"
  assert f"results in {exp_dir}" in out
  assert not os.listdir(tmp_path)
  store = store_lib.ResultsStore(bucket, "smoke")
  summaries = store.summaries()
  assert len(summaries) == 4
  for summary in summaries:  # Every cell: records + summary, checksum valid.
    assert store.check_cell(summary["cell_id"]) is None
    assert summary["records"]["count"] == 3
  assert storage.exists(f"{exp_dir}/{schema.MANIFEST_FILE}")

  # Resuming reads the bucket: nothing is redone; the dry run sees it too.
  assert _sweep(bucket) == 0
  assert "4 cells, 4 already done" in capsys.readouterr().out
  assert _sweep(bucket, "--dry_run") == 0
  cells = [l for l in capsys.readouterr().out.splitlines()
           if l.endswith(tuple(s["cell_id"] for s in summaries))]
  assert len(cells) == 4 and all(l.startswith("done") for l in cells)

  # The same files on a local disk, copied by fsspec itself.
  local = tmp_path / "local" / "smoke"
  fs, bare = fsspec.core.url_to_fs(exp_dir)
  for path in fs.find(bare):
    rel = path[len(bare) + 1:]
    (local / rel).parent.mkdir(parents=True, exist_ok=True)
    (local / rel).write_bytes(fs.cat_file(path))
  assert sorted(p.name for p in (local / "cells").iterdir()) == sorted(
      n for n in storage.listdir(f"{exp_dir}/cells"))

  # `harness report` on the bucket: Table 2 printed, outputs uploaded.
  assert main(["report", "--results", exp_dir]) == 0
  printed = capsys.readouterr().out
  assert f"{exp_dir}/table2.md" in printed and "# Table 2" in printed
  assert main(["report", "--results", str(local)]) == 0
  printed_local = capsys.readouterr().out
  assert (printed.split("Wrote:")[0]
          == printed_local.split("Wrote:")[0].replace(str(local), exp_dir))
  assert storage.read_text(f"{exp_dir}/table2.md") == (
      local / "table2.md").read_text()
  assert storage.read_bytes(f"{exp_dir}/points.csv") == (
      local / "points.csv").read_bytes()
  assert not [n for n in os.listdir(tmp_path) if n != "local"]

  # The report library reads the bucket too.
  built = report.build_report(exp_dir, bootstrap=0)
  assert len(built.cells) == 4

  # A local sweep of the same experiment: the same cells and decodes.
  assert _sweep(tmp_path / "fresh") == 0
  capsys.readouterr()
  fresh = store_lib.ResultsStore(str(tmp_path / "fresh"), "smoke")
  assert [s["cell_id"] for s in fresh.summaries()] == [
      s["cell_id"] for s in summaries]
  for summary in summaries:
    cell_id = summary["cell_id"]
    assert fresh.read_summary(cell_id)["quality"] == summary["quality"]
    assert [r["prediction"] for r in fresh.read_records(cell_id)] == [
        r["prediction"] for r in store.read_records(cell_id)]


def test_gather_reads_and_writes_buckets(capsys):
  hosts = [f"{_bucket()}/smoke" for _ in range(2)]
  for host in hosts:  # The same file on both hosts is copied once.
    store_lib.atomic_write_text(f"{host}/extra/x.txt", "same")
  store_lib.atomic_write_text(f"{hosts[1]}/extra/y.txt", "only here")
  into = f"{_bucket()}/smoke"
  assert main(["gather", *hosts, "--into", into]) == 0
  assert "gathered 2 files" in capsys.readouterr().out
  assert storage.walk_files(into) == ["extra/x.txt", "extra/y.txt"]
  store_lib.atomic_write_text(f"{hosts[1]}/extra/x.txt", "other")
  assert main(["gather", *hosts, "--into", f"{_bucket()}/m"]) == 1
  assert "differs from" in capsys.readouterr().err


# --- One-line refusals -------------------------------------------------------


def _one_error(capsys, argv, code=2):
  got = main(argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert got == code, err
  assert len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


@pytest.mark.parametrize("dry_run", [False, True])
def test_unknown_scheme_is_one_line_before_anything(tmp_path, capsys,
                                                    monkeypatch, dry_run):
  monkeypatch.chdir(tmp_path)
  argv = ["sweep", "--gin_file", SMOKE, "--no_progress",
          "--gin.RESULTS_DIR='foo://x/results'"]
  line = _one_error(capsys, argv + (["--dry_run"] if dry_run else []))
  assert line == ("error: RESULTS_DIR foo://x/results: unknown filesystem "
                  "scheme foo:// (use a local path, file://, or one of "
                  "gs://, gcs://, memory://)")
  assert not os.listdir(tmp_path)  # No local "foo:" folder.


@pytest.mark.parametrize("dry_run", [False, True])
def test_missing_bucket_library_names_the_extra(tmp_path, capsys,
                                                monkeypatch, dry_run):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setitem(sys.modules, "gcsfs", None)  # Not installed.
  argv = ["sweep", "--gin_file", SMOKE, "--no_progress",
          "--gin.RESULTS_DIR='gs://bucket/results'"]
  line = _one_error(capsys, argv + (["--dry_run"] if dry_run else []))
  assert line == ("error: RESULTS_DIR gs://bucket/results: gs:// needs "
                  "gcsfs, which is not installed: pip install -e '.[gcs]'")
  assert not os.listdir(tmp_path)


def test_report_and_gather_refuse_unknown_schemes(capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, "gcsfs", None)
  line = _one_error(capsys, ["report", "--results", "foo://x/smoke"])
  assert line.startswith("error: --results foo://x/smoke: unknown "
                         "filesystem scheme foo://")
  line = _one_error(capsys, ["report", "--results", "gs://b/smoke"])
  assert line.endswith("gs:// needs gcsfs, which is not installed: "
                       "pip install -e '.[gcs]'")
  line = _one_error(capsys, ["gather", "memory://a/smoke", "--into",
                             "s4://b/smoke"])
  assert "directory s4://b/smoke: unknown filesystem scheme s4://" in line


def test_preflight_lists_the_problem_with_the_others(monkeypatch):
  """Library callers of ``preflight.check`` get it as a listed problem."""
  exp, _ = gin_config.parse([SMOKE], ["RESULTS_DIR='foo://x'"])
  _, found = preflight.pre_run_checks(exp)
  assert found.problems == [("results", "RESULTS_DIR foo://x: unknown "
                             "filesystem scheme foo:// (use a local path, "
                             "file://, or one of gs://, gcs://, memory://)")]
  exp, _ = gin_config.parse([SMOKE], ["RESULTS_DIR='memory://b/r'"])
  _, found = preflight.pre_run_checks(exp)
  assert not found.problems
  assert found.warnings == ["results memory://b/r/smoke: remote (memory://); "
                            "whether it is writable is not checked before "
                            "the run"]


def test_an_unreadable_bucket_is_a_listed_problem(monkeypatch):
  def unreachable(path):
    raise OSError("Cannot connect to host storage.googleapis.com:443")

  monkeypatch.setattr(storage, "listdir", unreachable)
  exp, _ = gin_config.parse([SMOKE], ["RESULTS_DIR='memory://b/r'"])
  _, found = preflight.pre_run_checks(exp)
  assert found.problems == [("results", "memory://b/r/smoke: cannot be read "
                             "(OSError: Cannot connect to host "
                             "storage.googleapis.com:443)")]


# --- The storage layer ---------------------------------------------------------


def test_local_paths_are_written_as_before(tmp_path):
  path = tmp_path / "a" / "x.json"
  for text in ("one", "twö\n"):
    store_lib.atomic_write_text(str(path), text)
  assert path.read_bytes() == "twö\n".encode("utf-8")
  assert os.listdir(tmp_path / "a") == ["x.json"]  # No temporary file left.
  store_lib.atomic_write_text(f"file://{tmp_path}/b/y.json", "y")
  assert (tmp_path / "b" / "y.json").read_text() == "y"
  (tmp_path / "a" / ".tmp-1").write_text("")
  assert storage.glob(str(tmp_path / "a"), "*") == [str(path)]
  assert storage.glob(str(tmp_path / "a"), ".tmp-*") == [
      str(tmp_path / "a" / ".tmp-1")]
  assert storage.walk_files(str(tmp_path)) == ["a/x.json", "b/y.json"]


def test_bucket_paths():
  assert storage.join("gs://b/r", "smoke", "cells") == "gs://b/r/smoke/cells"
  assert storage.split("gs://b/r/smoke/") == ("gs://b/r", "smoke")
  assert storage.normpath("gs://b//r/./x/") == "gs://b/r/x"
  assert storage.is_remote("memory://x") and not storage.is_remote("file:///x")
  assert storage.local_path("file:///tmp/x") == "/tmp/x"
  assert not storage.is_remote("results/gs:/x")  # A local folder name.


def test_bucket_writes_are_whole_objects():
  root = _bucket()
  store_lib.atomic_write_text(f"{root}/cells/a.json", "{}\n")
  store_lib.atomic_write_text(f"{root}/cells/a.json", '{"b": 1}\n')
  assert storage.read_text(f"{root}/cells/a.json") == '{"b": 1}\n'
  assert storage.walk_files(root) == ["cells/a.json"]  # No temporary object.
  assert storage.listdir(f"{root}/nothing") == []
  assert not storage.isdir(f"{root}/nothing")


@pytest.mark.parametrize("workdir,message", [
    ("gs://bucket/ft", "--workdir gs://bucket/ft: fine-tuning writes its work "
     "directory on a local or shared filesystem, not a bucket (copy it there "
     "afterwards, e.g. gcloud storage rsync -r)"),
    ("foo://x/ft", "--workdir foo://x/ft: unknown filesystem scheme foo:// "
     "(use a local path, file://, or one of gs://, gcs://, memory://)")])
def test_finetune_refuses_a_bucket_workdir(tmp_path, capsys, monkeypatch,
                                           workdir, message):
  monkeypatch.chdir(tmp_path)
  gin_file = sorted(n for n in os.listdir(os.path.join(REPO, "gin",
                                                       "finetune"))
                    if n.startswith("newstest"))[0]
  line = _one_error(capsys, ["finetune", "--gin_file",
                             f"finetune/{gin_file}", "--workdir", workdir])
  assert line == f"error: {message}"
  assert not os.listdir(tmp_path)
