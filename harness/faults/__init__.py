"""Fault-injection suite: crashes, full disks, bad input, numerics,
determinism and the MBPP sandbox, summarised as one table
(``python scripts/faults.py``; ``docs/reliability.md``)."""
