"""The edge every command shares (``python -m harness ...``).

One rule for finding gin files and turning their errors into one line
(``gin_files``), the exit codes and the one-line error printer
(``errors``), the provenance stamped on results (``provenance``) and
XLA:CPU's thread count (``cpu_threads``). ``harness.runner`` (the sweep)
and ``harness.finetune`` (t5x-style fine-tuning) both stand on it and do not
import each other.
"""
