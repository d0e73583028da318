"""`make bench`: how close each method runs to its theoretical limit.

Measures, in one run on one machine (docs/bench.md defines every ratio):

* efficiency of ``spec_decode`` and ``spec_cascade_token`` against the
  speed-up formula S(α̂, γ, ĉ) and against an exact per-call cost model;
* loop overhead of every decoding loop against its own isolated model calls;
* compiles per program over an α sweep, and compile time;
* a side-by-side with Hugging Face ``generate()`` on identical weights;
* peak RSS of the default experiment and KV-cache bytes per token.

Entry point: ``python -m benchmarks`` -> :func:`benchmarks.run.run_bench`.
"""

from benchmarks.config import BenchConfig
from benchmarks.run import run_bench

__all__ = ["BenchConfig", "run_bench"]
