"""Import structure of the library: module circles, upward imports, sizes.

  python tools/import_structure.py .        # this checkout's harness/

Floors (lowest first): decoding; models, tasks, metrics, results; training;
runner, report; the command line; testing (fixtures, above everything).
An upward import is one from a lower floor to a higher one.
"""
import ast, os, sys, collections
root = sys.argv[1]
LAYERS = {  # lower number = lower floor
  "decoding": 0, "models": 1, "tasks": 1, "metrics": 1, "results": 1,
  "training": 2, "testing": 5, "runner": 3, "report": 3, "__main__": 4}
edges = collections.defaultdict(set)
lines = 0
files = 0
for dp, _, fs in os.walk(os.path.join(root, "harness")):
  for f in fs:
    if not f.endswith(".py"): continue
    p = os.path.join(dp, f); files += 1
    src = open(p).read(); lines += src.count("\n")
    mod = os.path.relpath(p, root)[:-3].replace("/", ".")
    if mod.endswith(".__init__"): mod = mod[:-9]
    for node in ast.walk(ast.parse(src)):
      names = []
      if isinstance(node, ast.Import): names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        subs = [node.module + "." + a.name for a in node.names]
        real_subs = [n for n in subs if os.path.exists(os.path.join(root, n.replace(".", "/") + ".py")) or os.path.isdir(os.path.join(root, n.replace(".", "/")))]
        names = real_subs + ([node.module] if len(real_subs) < len(subs) else [])
      for n in names:
        if n.startswith("harness"): edges[mod].add(n)
mods = set(edges) | {m for v in edges.values() for m in v}
def pkg(m):
  parts = m.split(".")
  return parts[1] if len(parts) > 1 else "__init__"
# module-level graph restricted to real modules
real = set(edges)
g = {m: {n for n in edges[m] if n in real and n != m} for m in real}
# cycles via Tarjan
idx, low, st, on, out, c = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
  idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
  for w in g[v]:
    if w not in idx: sc(w); low[v] = min(low[v], low[w])
    elif w in on: low[v] = min(low[v], idx[w])
  if low[v] == idx[v]:
    comp = []
    while True:
      w = st.pop(); on.discard(w); comp.append(w)
      if w == v: break
    if len(comp) > 1: out.append(comp)
for v in g:
  if v not in idx: sc(v)
up = []
for m, ns in edges.items():
  a = pkg(m)
  for n in ns:
    b = pkg(n)
    if a in LAYERS and b in LAYERS and LAYERS[b] > LAYERS[a]:
      up.append((m, n))
print(f"files {files}, lines {lines}")
print(f"module import cycles: {len(out)}", out[:5])
print(f"upward imports: {len(up)}", up[:10])
pk = collections.defaultdict(set)
for m, ns in edges.items():
  for n in ns:
    if pkg(m) != pkg(n): pk[pkg(m)].add(pkg(n))
for k in sorted(pk): print(f"  {k} -> {sorted(pk[k])}")
