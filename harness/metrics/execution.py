"""Execution-based metrics: MBPP pass@1 through the sandbox.

Each prediction is one sampled program (pass@1 with one sample per problem).
The program that runs is ``prediction + test_setup_code + test_list``, in
``harness.metrics.sandbox``; a problem passes iff all its asserts pass within
the limits. The setup code goes *after* the solution:
in tasks 367 and 927 it builds trees from the ``Node`` class that the
solution defines (with setup first, their reference solutions fail).

Before running anything, ``pass@1`` checks that a kernel-enforced sandbox
launcher works (``sandbox.require_isolation``): with the audit hook as the only
layer it refuses, naming what is missing, unless the caller opts in
(``allow_unisolated``: ``--allow_unisolated_mbpp`` or the environment variable
``HARNESS_SANDBOX_ALLOW_AUDIT_HOOK_ONLY=1``, read by the command line). Which launcher ran is in
every results file's provenance (``sandbox.provenance``).
"""

from __future__ import annotations

import collections
from typing import Any, Mapping, Sequence

from harness.metrics import registry
from harness.metrics import sandbox


def mbpp_program(solution: str, extra: Mapping[str, Any]) -> str:
  """The program run for one MBPP problem.

  Args:
    solution: The candidate code.
    extra: The example's extras with ``test_list`` (asserts) and optionally
      ``test_setup_code``.

  Returns:
    Python source: the solution, the setup code, then the asserts.
  """
  if "test_list" not in extra:
    raise registry.MetricError("pass@1 needs 'test_list' in each extras entry")
  parts = [solution, extra.get("test_setup_code", ""), *extra["test_list"]]
  return "\n".join(p for p in parts if p) + "\n"


@registry.register_metric("pass@1", uses_extras=True, runs_code=True)
def pass_at_1(targets: registry.Targets, predictions: Sequence[str],
              extras: Sequence[Mapping[str, Any]], *,
              allow_unisolated: bool = False) -> dict[str, float]:
  """MBPP pass@1: share of problems whose program passes all asserts."""
  registry.check_lengths(targets, predictions)
  try:
    sandbox.require_isolation(allow_unisolated)
  except sandbox.SandboxUnavailable as e:
    raise registry.MetricError(str(e)) from None
  programs = [mbpp_program(p, e) for p, e in zip(predictions, extras)]
  results = sandbox.run_programs(programs)
  failures = collections.Counter(r.reason for r in results if not r.passed)
  scores = {"pass@1": 100.0 * sum(r.passed for r in results) /
                      max(len(results), 1)}
  scores.update({f"pass@1/{reason}": float(n) for reason, n in failures.items()})
  return scores
