"""Fault-injection suite: ``make faults`` (see docs/reliability.md).

  python -m tools.faults                      # every section, 20 crash trials
  python -m tools.faults --sections crash --trials 3
  python -m tools.faults --table_only         # re-render from sections/*.json

Writes results/faults/sections/<section>.json, then results/faults/faults.md
and faults.json (the table is printed too). Exits 1 if any case fails.
"""

import argparse
import json
import pathlib
import sys
import tempfile

from tools.faults import suite

REPO = pathlib.Path(__file__).resolve().parents[2]


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sections", default=",".join(suite.SECTIONS),
                      help=f"comma-separated subset of {suite.SECTIONS}")
  parser.add_argument("--trials", type=int, default=20, help="crash trials")
  parser.add_argument("--seed", type=int, default=0, help="kill-delay seed")
  parser.add_argument("--out", default=str(REPO / "results" / "faults"))
  parser.add_argument("--work", default=None,
                      help="scratch directory (default: a new temp dir)")
  parser.add_argument("--table_only", action="store_true")
  return parser.parse_args(argv)


def _failures(out: pathlib.Path) -> list[str]:
  figs = json.loads((out / "faults.json").read_text())
  bad = []
  crash = figs.get("crash", {})
  for key in ("lost_rows", "duplicated_rows", "corrupted_files",
              "differing_files", "resume_failures", "false_complete_after_kill"):
    if crash.get(key):
      bad.append(f"crash {key}={crash[key]}")
  for name, fig in figs.items():
    for o in fig.get("outcomes", []) if isinstance(fig.get("outcomes"),
                                                   list) else []:
      if not o.get("passed", True):
        bad.append(f"{name}: {o.get('name')}")
  return bad


def main(argv=None) -> int:
  args = _parse(argv)
  out = pathlib.Path(args.out)
  if not args.table_only:
    names = [s for s in args.sections.split(",") if s]
    unknown = set(names) - set(suite.SECTIONS)
    if unknown:
      print(f"error: unknown sections {sorted(unknown)}", file=sys.stderr)
      return 2
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="faults-"))
    suite.run_sections(names, suite.Options(out, work, args.trials,
                                            args.seed))
  print(suite.write_table(out))
  bad = _failures(out)
  for line in bad:
    print(f"FAILED: {line}", file=sys.stderr)
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
