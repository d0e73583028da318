"""The library's import structure: floors, no upward imports, no circles.

Every package of ``harness/`` has a floor (lowest first); a module may
import from its own floor or below, never above. Imports inside functions
count. Run this file as a script to print the structure:

  python tests/test_import_structure.py
"""

import ast
import collections
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Package -> floor (lower number = lower floor). "" is the top package
# (``harness/__init__.py``: REPO_ROOT), which imports nothing of its own.
FLOORS = {
    "": 0,
    "extras": 0,  # optional dependencies, imported where used
    "decoding": 1,
    "models": 2, "tasks": 2, "metrics": 2, "results": 2,
    "training": 3,
    "edge": 4,  # what every command shares
    "runner": 5, "finetune": 5, "report": 5,  # siblings: no arrow between
    "__main__": 6,  # the command line
    "testing": 7,  # fixtures for tests and docs, above everything
}
SIBLINGS = (("runner", "finetune"), ("runner", "report"),
            ("finetune", "report"))


def _module_name(path: str) -> str:
  mod = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
  return mod.removesuffix(".__init__")


def _is_module(name: str) -> bool:
  base = os.path.join(REPO, *name.split("."))
  return os.path.exists(base + ".py") or os.path.isdir(base)


def module_graph() -> dict[str, set[str]]:
  """harness module -> the harness modules it imports (anywhere in it)."""
  graph = {}
  for dirpath, _, files in os.walk(os.path.join(REPO, "harness")):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(dirpath, name)
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
      targets = set()
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and (
            node.level == 0):
          subs = [f"{node.module}.{a.name}" for a in node.names]
          found = [s for s in subs if _is_module(s)]
          targets |= set(found)
          if len(found) < len(subs):
            targets.add(node.module)
      graph[_module_name(path)] = {t for t in targets
                                   if t.split(".")[0] == "harness"}
  return graph


def package(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def package_graph(graph) -> dict[str, set[str]]:
  out = collections.defaultdict(set)
  for mod, targets in graph.items():
    for target in targets:
      if package(mod) != package(target):
        out[package(mod)].add(package(target))
  return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components of more than one node (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w == v or w not in graph:
        continue
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        found.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def upward(graph) -> list[tuple[str, str]]:
  return sorted((mod, target) for mod, targets in graph.items()
                for target in targets
                if FLOORS[package(target)] > FLOORS[package(mod)])


def test_every_package_has_a_floor():
  packages = {package(m) for m in module_graph()}
  assert packages - set(FLOORS) == set(), "add the new package to FLOORS"
  assert set(FLOORS) - packages == set(), "FLOORS names a missing package"


def test_no_upward_imports():
  assert upward(module_graph()) == []


def test_no_module_or_package_circles():
  graph = module_graph()
  assert circles(graph) == []
  assert circles(package_graph(graph)) == []


def test_siblings_do_not_import_each_other():
  packages = package_graph(module_graph())
  for a, b in SIBLINGS:
    assert b not in packages.get(a, ()) and a not in packages.get(b, ()), (
        a, b)


if __name__ == "__main__":
  g = module_graph()
  pk = package_graph(g)
  print(f"modules {len(g)}; floors {len(set(FLOORS.values()))}; "
        f"module circles {circles(g)}; package circles {circles(pk)}; "
        f"upward imports {upward(g)}")
  for name in sorted(pk):
    print(f"  {name or 'harness'} (floor {FLOORS[name]}) -> "
          f"{sorted(n or 'harness' for n in pk[name])}")
