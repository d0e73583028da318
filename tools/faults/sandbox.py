"""The MBPP sandbox's adversarial suite, summarised.

Each attack of ``tests/test_sandbox.py`` is run once more through
``harness.metrics.sandbox.run_program`` with the same limits, and tabulated
as (attack, contained?, reason, seconds). *Contained* means the program did
not pass and ended for the expected reason. The test file itself is also run
with pytest and its pass count recorded.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from tools.faults import common

_EVIL = os.path.join(tempfile.gettempdir(), "harness-faults-evil")
# (attack, program, expected reason prefixes); the control must pass.
ATTACKS = (
    ("clean program (control)", "print('hello')\nassert sum(range(4)) == 6",
     ("ok",)),
    ("failed assert", "assert 1 + 1 == 3", ("exception: AssertionError",)),
    ("infinite loop", "while True:\n  pass", ("timeout", "cpu limit")),
    ("fork bomb", "import os\nwhile True:\n  os.fork()", ("blocked: process",)),
    ("subprocess", "import subprocess\nsubprocess.run(['true'])",
     ("blocked:",)),
    ("memory hog", "x = []\nwhile True:\n  x.append(bytearray(10 << 20))",
     ("memory",)),
    ("write outside workdir", f"open({_EVIL!r}, 'w').write('x')",
     ("blocked: filesystem",)),
    ("mkdir outside workdir", f"import os\nos.mkdir({_EVIL!r})",
     ("blocked: filesystem",)),
    ("network (exception caught)",
     "import socket\ntry:\n  socket.socket().connect(('1.1.1.1', 53))\n"
     "except BaseException:\n  pass", ("blocked: network",)),
    ("read parent environment",
     "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())",
     ("blocked: filesystem", "exception: PermissionError",
      "exception: FileNotFoundError", "blocked: process")),
    ("kill the parent", "import os, signal\nos.kill(os.getppid(), 9)",
     ("blocked: signal",)),
    ("kill the process group", "import os, signal\nos.killpg(0, 9)",
     ("blocked: signal",)),
    ("stdout flood", "while True:\n  print('x' * 10000)", ("output limit",)),
    ("sys.exit(0) before the asserts", "import sys\nsys.exit(0)\nassert False",
     ("exception: SystemExit",)),
)


@dataclasses.dataclass(frozen=True)
class AttackOutcome:
  """One attack.

  Attributes:
    attack: what the program tries.
    contained: it did not pass (the control: it passed) and ended for an
      expected reason.
    reason: the sandbox's reason.
    seconds: wall time.
  """
  attack: str
  contained: bool
  reason: str
  seconds: float


@dataclasses.dataclass(frozen=True)
class SandboxReport:
  """Attacks and the pytest run of ``tests/test_sandbox.py``."""
  attacks: list[AttackOutcome]
  tests_passed: int
  tests_total: int
  evil_file_created: bool


def run_attacks() -> list[AttackOutcome]:
  """Runs every attack with the test suite's limits."""
  from harness.metrics import sandbox  # pylint: disable=g-import-not-at-top
  limits = sandbox.SandboxLimits(timeout_s=3.0, cpu_s=3,
                                 memory_bytes=256 << 20, file_bytes=1 << 20)
  out = []
  for attack, code, expected in ATTACKS:
    begin = time.monotonic()
    result = sandbox.run_program(code, limits)
    ok = result.reason.startswith(expected) and (
        result.passed == (expected == ("ok",)))
    out.append(AttackOutcome(attack, ok, result.reason,
                             time.monotonic() - begin))
  return out


def run_test_file() -> tuple[int, int]:
  """(passed, total) of ``pytest tests/test_sandbox.py`` (default markers)."""
  with tempfile.TemporaryDirectory() as tmp:
    xml = os.path.join(tmp, "junit.xml")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                    "no:cacheprovider", f"--junitxml={xml}",
                    "tests/test_sandbox.py"], cwd=common.REPO,
                   capture_output=True, check=False)
    if not os.path.exists(xml):
      return 0, 0
    suite = ET.parse(xml).getroot().iter("testsuite")
    total = failed = 0
    for s in suite:
      total += int(s.get("tests", 0)) - int(s.get("skipped", 0))
      failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
  return total - failed, total


def run_sandbox(log=print) -> SandboxReport:
  attacks = run_attacks()
  for a in attacks:
    log(f"sandbox: {'ok  ' if a.contained else 'FAIL'} {a.attack}: "
        f"{a.reason} ({a.seconds:.1f} s)")
  passed, total = run_test_file()
  log(f"sandbox: tests/test_sandbox.py {passed}/{total} passed")
  return SandboxReport(attacks, passed, total, os.path.exists(_EVIL))
