"""Fault-injection suite: crashes, full disks, bad input, numerics,
determinism and the MBPP sandbox, summarised as one table
(``python -m tools.faults``; ``docs/reliability.md``)."""
