"""The fault table: headline figures and per-case rows, as Markdown."""

from __future__ import annotations

from typing import Any

MAX_LINE = 110


def _yes(value: Any) -> str:
  if value is None:
    return "–"
  return "yes" if value else "**NO**"


def _clip(text: str) -> str:
  text = text.replace("|", "\\|")
  return text if len(text) <= MAX_LINE else text[:MAX_LINE - 1] + "…"


def crash_figures(result: dict) -> dict[str, Any]:
  """Totals over the crash trials."""
  trials = result["trials"]
  kill = [t["at_kill"] for t in trials]
  after = [t["after_resume"] for t in trials]
  return {
      "trials": len(trials),
      "killed_mid_run": sum(not k["exited_before_kill"] for k in kill),
      "kills_with_cells_done": sum(k["cells_done"] > 0 for k in kill),
      "kills_with_orphan_records": sum(
          k["records_without_summary"] > 0 for k in kill),
      "kills_with_temporaries": sum(k["temporaries"] > 0 for k in kill),
      "false_complete_after_kill": sum(k["false_complete"] for k in kill),
      "corrupted_after_kill": sum(k["corrupted_files"] for k in kill),
      "resume_failures": sum(t["resume_exit"] != 0 for t in trials),
      "lost_rows": sum(a["lost_rows"] for a in after),
      "duplicated_rows": sum(a["duplicated_rows"] for a in after),
      "corrupted_files": sum(a["corrupted_files"] for a in after),
      "differing_files": sum(a["differing_files"] for a in after),
      "temporaries_left": sum(a["temporaries"] for a in after),
      "resumed_identical": sum(a["identical"] for a in after),
      "rerun_identical": result["rerun"]["identical"],
      "files_compared_per_run": result["rerun"]["files_compared"],
      "rows_per_run": result["tokens_compared"],
      "uninterrupted_run_s": round(result["duration_s"], 1),
  }


def figures(sections: dict[str, dict]) -> dict[str, Any]:
  """Headline figures of every section present (faults.json)."""
  out: dict[str, Any] = {}
  for name, payload in sections.items():
    r = payload["result"]
    if name == "crash":
      fig = crash_figures(r)
    elif name in ("disk", "badinput"):
      fig = {"cases": len(r), "passed": sum(c["passed"] for c in r),
             "outcomes": r}
    elif name == "numerics":
      fig = {"rows": len(r["rows"]),
             "rows_passed": sum(x["passed"] for x in r["rows"]),
             "methods": len(r["decodes"]),
             "methods_passed": sum(x["passed"] for x in r["decodes"]),
             "decodes": sum(x["decodes"] for x in r["decodes"]),
             "bad_distributions": sum(x["bad_distributions"]
                                      for x in r["decodes"]),
             "outcomes": r}
    else:
      fig = {"runs": [{"user": run["user"], "launcher": run["launcher"],
                       "attacks": len(run["attacks"]),
                       "contained": sum(a["contained"] for a in run["attacks"]),
                       "kernel_contained": sum(
                           bool(a["kernel_contained"]) for a in run["attacks"])}
                      for run in r["runs"]],
             "tests_passed": r["tests_passed"],
             "tests_total": r["tests_total"], "outcomes": r}
    fig["machine"] = payload["machine"]
    fig["seconds"] = round(payload["seconds"], 1)
    out[name] = fig
  return out


def _crash_md(payload: dict) -> list[str]:
  f = crash_figures(payload["result"])
  return [
      "## Crash safety (SIGKILL at random moments, then resume)", "",
      *([f"**Incomplete run: {f['trials']} of the "
         f"{payload['options']['trials']} planned trials finished.**", ""]
        if not payload.get("complete", True) else []),
      f"{f['trials']} trials of the tiny sweep (3 cells × 3 examples; "
      f"uninterrupted run {f['uninterrupted_run_s']} s); kill delays seeded "
      f"(seed {payload['options']['seed']}), even trials uniform over the "
      "whole run, odd trials over the window in which files are written.", "",
      "| figure | value |", "|---|---|",
      f"| trials (killed mid-run / had already exited) | {f['trials']} "
      f"({f['killed_mid_run']} / {f['trials'] - f['killed_mid_run']}) |",
      f"| kills after ≥ 1 finished cell | {f['kills_with_cells_done']} |",
      f"| kills leaving records without summary / `.tmp-` files | "
      f"{f['kills_with_orphan_records']} / {f['kills_with_temporaries']} |",
      f"| partial files that looked complete after a kill | "
      f"{f['false_complete_after_kill']} |",
      f"| corrupted files after a kill | {f['corrupted_after_kill']} |",
      f"| resumes that failed | {f['resume_failures']} |",
      f"| **lost rows** after resume | **{f['lost_rows']}** |",
      f"| **duplicated rows** after resume | **{f['duplicated_rows']}** |",
      f"| **corrupted files** after resume | **{f['corrupted_files']}** |",
      f"| files differing from the uninterrupted run (timings masked) | "
      f"{f['differing_files']} |",
      f"| `.tmp-` files left after resume | {f['temporaries_left']} |",
      f"| resumed runs identical to the uninterrupted run | "
      f"{f['resumed_identical']}/{f['trials']} |", "",
      "## Determinism", "",
      "| check | result |", "|---|---|",
      f"| two uninterrupted runs, same seed: {f['files_compared_per_run']} "
      f"files, {f['rows_per_run']} per-example token lists | "
      f"{'identical' if f['rerun_identical'] else '**DIFFERENT**'} |",
      f"| every resumed run vs the uninterrupted run | "
      f"{f['resumed_identical']}/{f['trials']} identical |", ""]


def _disk_md(payload: dict) -> list[str]:
  rows = ["## Disk full, read-only results directory, permission denied", "",
          "| scenario | exit | one line, no traceback | names cause / path "
          "| cells done | `.tmp-` left | partial looks complete | resume "
          "after room identical | error line |",
          "|---|---|---|---|---|---|---|---|---|"]
  for o in payload["result"]:
    if o["skipped"]:
      rows.append(f"| {o['name']} | skipped: {o['skipped']} ||||||||")
      continue
    rows.append(
        f"| {o['name']} | {o['exit_code']} | "
        f"{_yes(o['one_line'] and not o['traceback'])} | "
        f"{_yes(o['names_cause'])} / {_yes(o['names_path'])} | "
        f"{o['cells_done']} | {o['temporaries']} | {o['false_complete']} | "
        f"{_yes(o['resumed_identical'])} | `{_clip(o['error_line'])}` |")
  return rows + [""]


def _badinput_md(payload: dict) -> list[str]:
  r = payload["result"]
  passed = sum(c["passed"] for c in r)
  rows = [f"## Bad input ({passed}/{len(r)} cases pass)", "",
          "Through the command line; pass = non-zero exit, exactly one "
          "`error:` line naming the cause, no traceback (a traceback with "
          "`--debug` where checked), no cell summary written.", "",
          "| category | case | exit | one line | traceback | names cause | "
          "--debug traceback | library error | error line |",
          "|---|---|---|---|---|---|---|---|---|"]
  for c in r:
    rows.append(
        f"| {c['category']} | {c['name']} | {c['exit_code']} | "
        f"{_yes(c['one_line'])} | {'**yes**' if c['traceback'] else 'no'} | "
        f"{_yes(c['names_cause'])} | {_yes(c['debug_traceback'])} | "
        f"{c['library_error'] or '–'} | `{_clip(c['error_line'])}` |")
  return rows + [""]


def _numerics_md(payload: dict) -> list[str]:
  r = payload["result"]
  rows = ["## Numerics", "", "`process_logits` on hostile rows (every T in "
          "{0, 1e-30, 1e-6, 1e-4, 1} × top-P in {1e-6, 0.5, 1}):", "",
          "| row | behaviour | valid distributions | behaviour holds | "
          "T = 0 one-hot, top-P 1e-6 keeps only the top |",
          "|---|---|---|---|---|"]
  for x in r["rows"]:
    rows.append(f"| {x['row']} | {x['behaviour']} | "
                f"{x['distributions_ok']}/{x['combos']} | "
                f"{_yes(x['behaviour_ok'])} | {_yes(x['greedy_ok'])} |")
  rows += ["", "Whole decodes on toy bigram models with NaN / ±inf / all −inf "
           "logit rows (T ∈ {0, 1e-6, 1} × top-P ∈ {1e-6, 1} × 3 hostile "
           "pairs); every distribution passed to `sample` checked on device:",
           "", "| method | decodes | bad distributions | bad outputs | error |",
           "|---|---|---|---|---|"]
  for x in r["decodes"]:
    rows.append(f"| {x['method']} | {x['decodes']} | "
                f"{x['bad_distributions']} | {x['bad_outputs']} | "
                f"{x['error'] or '–'} |")
  return rows + [""]


def _sandbox_md(payload: dict) -> list[str]:
  r = payload["result"]
  rows = ["## MBPP sandbox (adversarial suite)", "",
          f"`tests/test_sandbox.py`: {r['tests_passed']}/{r['tests_total']} "
          "passed. Each attack runs through `run_program` as each user, with "
          "the audit hook (as MBPP runs) and again without it (the kernel "
          "layers alone). *Contained*: no trace outside the working "
          "directory (no entry added, changed or removed in the watched "
          "directories, no connection to the suite's sockets, no secret of "
          "its environment in the output) and, with the hook, the program did"
          " not pass (a control: it passed); without the hook many attacks "
          "fail silently, so there only traces count.", ""]
  for run in r["runs"]:
    attacks = run["attacks"]
    kernel = [a for a in attacks if a["kernel_contained"] is not None]
    rows += [f"### As {run['user']}: launcher `{run['launcher'] or '-'}`", "",
             f"{run['isolation'] or run['error']}. Watched for traces: "
             f"{', '.join(run['targets'])}.", "",
             f"**{sum(a['contained'] for a in attacks)}/{len(attacks)} "
             f"contained**; kernel layers alone: "
             f"{sum(a['kernel_contained'] for a in kernel)}/{len(kernel)}.",
             "", "| attack | class | contained | reason | kernel alone | "
             "reason (kernel alone) | traces |",
             "|---|---|---|---|---|---|---|"]
    for a in attacks:
      kernel_yes = ("–" if a["kernel_contained"] is None
                    else _yes(a["kernel_contained"]))
      traces = "; ".join(a["traces"] + a["kernel_traces"]) or "–"
      rows.append(f"| {_clip(a['attack'])} | {a['kind']} | "
                  f"{_yes(a['contained'])} | {_clip(a['reason'])} | "
                  f"{kernel_yes} | {_clip(a['kernel_reason']) or '–'} | "
                  f"{_clip(traces)} |")
    rows.append("")
  return rows


_RENDER = {"crash": _crash_md, "disk": _disk_md, "badinput": _badinput_md,
           "numerics": _numerics_md, "sandbox": _sandbox_md}


def render(sections: dict[str, dict]) -> str:
  """The whole table as Markdown (sections in suite order)."""
  lines = ["# Fault-injection figures (`make faults`)", ""]
  machines = {(p["machine"]["host"], p["machine"]["date"][:10])
              for p in sections.values()}
  for name, payload in sections.items():
    m = payload["machine"]
    lines.append(f"- {name}: {m['date']} on {m['host']} ({m['platform']}, "
                 f"{m['cpus']} CPUs, jax {m['jax']}, {m['device']}), "
                 f"{payload['seconds']:.0f} s")
  del machines
  lines.append("")
  for name, payload in sections.items():
    lines += _RENDER[name](payload)
  return "\n".join(lines)
