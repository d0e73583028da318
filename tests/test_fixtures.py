"""The library never imports the fixtures (``harness.testing``, ``tests``)."""

from __future__ import annotations

import ast
import pathlib

import harness

LIBRARY = pathlib.Path(harness.__file__).parent
FIXTURE_PACKAGES = ("harness.testing", "tests")


def _imported_modules(path: pathlib.Path) -> set[str]:
  """Absolute module names imported by ``path`` (``from a import b`` gives
  both ``a`` and ``a.b``, since ``b`` may be a module)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def _is_fixture(module: str) -> bool:
  return any(module == p or module.startswith(p + ".")
             for p in FIXTURE_PACKAGES)


def test_library_does_not_import_fixtures():
  offenders = {}
  for path in LIBRARY.rglob("*.py"):
    if (LIBRARY / "testing") in path.parents:
      continue
    bad = sorted(m for m in _imported_modules(path) if _is_fixture(m))
    if bad:
      offenders[str(path.relative_to(LIBRARY))] = bad
  assert not offenders


def test_the_check_sees_a_fixture_import(tmp_path):
  source = tmp_path / "m.py"
  source.write_text("from harness import testing\n"
                    "import tests.conftest\n")
  assert {m for m in _imported_modules(source) if _is_fixture(m)} == {
      "harness.testing", "tests.conftest"}
