"""The small-M CPU kernel behind `models.cpu_matmul.matmul`.

Exactness against float64, the row-count invariance the speculative loops
rely on, gradients, vmap, the fall-backs (switch off, mesh, too many rows,
a compiler that fails) and the roofline tool's pieces.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import roofline
from harness.models import cpu_matmul

pytestmark = pytest.mark.skipif(not cpu_matmul.available(),
                                reason="kernel not built on this host")

SHAPES = [  # (weight shape, transposed, contract)
    ((640, 2048), False, 1), ((33, 47), False, 1), ((7, 3), False, 1),
    ((1000, 640), True, 1), ((37, 13), True, 1), ((4, 8, 24), False, 2),
    ((24, 4, 8), False, 1)]


def _ref(x, w, transposed, contract):
  x64 = np.asarray(x, np.float64)
  w64 = np.asarray(w, np.float64)
  if transposed:
    return x64 @ w64.T
  axes = (list(range(x64.ndim - contract, x64.ndim)), list(range(contract)))
  return np.tensordot(x64, w64, axes=axes)


@pytest.mark.parametrize("shape,transposed,contract", SHAPES)
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 9])
def test_matches_float64(shape, transposed, contract, rows):
  rng = np.random.default_rng(rows)
  w = rng.standard_normal(shape).astype(np.float32)
  inner = (shape[-1],) if transposed else shape[:contract]
  x = rng.standard_normal((1, rows, *inner)).astype(np.float32)
  y = jax.jit(lambda x, w: cpu_matmul.matmul(
      x, w, contract=contract, transposed=transposed))(x, w)
  ref = _ref(x, w, transposed, contract)
  assert y.shape == ref.shape and y.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(y), ref, rtol=2e-5,
                             atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("shape,transposed", [((640, 300), False),
                                              ((301, 640), True)])
def test_a_rows_result_does_not_depend_on_the_row_count(shape, transposed):
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.standard_normal(shape).astype(np.float32))
  x = jnp.asarray(rng.standard_normal((8, 640)).astype(np.float32))
  f = jax.jit(lambda x, w: cpu_matmul.matmul(x, w, transposed=transposed))
  full = np.asarray(f(x, w))
  for m in range(1, 8):
    assert np.array_equal(np.asarray(f(x[:m], w)), full[:m]), m
    assert np.array_equal(np.asarray(f(x[m:m + 1], w)), full[m:m + 1]), m


def _hlo(fn, *args) -> str:
  return jax.jit(fn).lower(*args).as_text()


def test_kernel_only_where_it_belongs():
  w = jnp.ones((16, 32), jnp.float32)
  small = jnp.ones((4, 16), jnp.float32)
  assert "harness_small_m_matmul" in _hlo(cpu_matmul.matmul, small, w)
  big = jnp.ones((cpu_matmul.MAX_ROWS + 1, 16), jnp.float32)
  assert "harness_small_m_matmul" not in _hlo(cpu_matmul.matmul, big, w)
  off = _hlo(lambda x, w: cpu_matmul.matmul(x, w, enabled=False), small, w)
  assert "harness_small_m_matmul" not in off
  bf16 = _hlo(cpu_matmul.matmul, small.astype(jnp.bfloat16),
              w.astype(jnp.bfloat16))
  assert "harness_small_m_matmul" not in bf16


@pytest.mark.parametrize("transposed", [False, True])
def test_gradients_match_the_dot(transposed):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((3, 64)).astype(np.float32))
  w = jnp.asarray(rng.standard_normal((64, 32)).astype(np.float32))
  wk = w.T if transposed else w

  def loss(x, w):
    return jnp.sum(jnp.sin(cpu_matmul.matmul(x, w, transposed=transposed)))

  got = jax.grad(loss, argnums=(0, 1))(x, wk)
  want = jax.grad(lambda x, w: jnp.sum(jnp.sin(x @ (w.T if transposed
                                                    else w))),
                  argnums=(0, 1))(x, wk)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_vmap():
  rng = np.random.default_rng(2)
  w = jnp.asarray(rng.standard_normal((64, 16)).astype(np.float32))
  xs = jnp.asarray(rng.standard_normal((5, 2, 64)).astype(np.float32))
  got = jax.vmap(lambda x: cpu_matmul.matmul(x, w))(xs)
  np.testing.assert_allclose(got, np.einsum("bmd,dn->bmn", xs, w),
                             rtol=1e-5, atol=1e-5)


def _child(code: str, **env) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
      text=True, env={**os.environ, **env}, timeout=300)


def test_switch_off_and_a_failing_compiler_fall_back_to_the_dot(tmp_path):
  code = """
    import warnings
    import jax, jax.numpy as jnp
    from harness.models import cpu_matmul
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      y = cpu_matmul.matmul(jnp.ones((2, 8)), jnp.ones((8, 3)))
    text = jax.jit(cpu_matmul.matmul).lower(
        jnp.ones((2, 8)), jnp.ones((8, 3))).as_text()
    print(cpu_matmul.status(), float(y.sum()),
          "harness_small_m_matmul" in text,
          sum("small-M CPU kernel unavailable" in str(w.message)
              for w in caught))
  """
  off = _child(code, HARNESS_CPU_KERNELS="0")
  assert off.returncode == 0, off.stderr
  assert off.stdout.split() == ["off", "48.0", "False", "0"]
  broken = _child(code, CXX=str(tmp_path / "no-such-compiler"),
                  HARNESS_KERNEL_CACHE=str(tmp_path / "cache"),
                  PATH=str(tmp_path))
  assert broken.returncode == 0, broken.stderr
  assert broken.stdout.split() == ["unavailable", "48.0", "False", "1"]


def test_models_route_small_products_through_the_kernel():
  from harness.models import random_gemma
  from harness.runner import pairs
  model = random_gemma(jax.random.key(0),
                       pairs.size_config("multi30k_gemma_small"))
  cache = model.prefill(jnp.arange(4, dtype=jnp.int32) + 3, 4, 16)
  text = _hlo(lambda m, t, c: m.score(t, c)[0], model,
              jnp.full((1, 3), 5, jnp.int32), cache)
  # q, k, v, o, gate, up, down per layer, and the output layer.
  assert text.count("harness_small_m_matmul") == (
      7 * model.config.num_layers + 1)


def test_roofline_operation_count_and_a_small_run(tmp_path):
  text = ("HloModule m\n\nENTRY %main (p: f32[2]) -> f32[2] {\n"
          "  %p = f32[2]{0} parameter(0)\n"
          "  %c = f32[] constant(1)\n"
          "  %f = f32[2]{0} fusion(f32[2]{0} %p), kind=kLoop\n"
          "  %d = f32[2]{0} custom-call(f32[2]{0} %f)\n"
          "  ROOT %t = (f32[2]{0}) tuple(f32[2]{0} %d)\n}\n")
  assert roofline.operation_count(text) == 2
  result = roofline.main(["--models", "multi30k_t5_small", "--max_k", "2",
                          "--calls", "3", "--host_mb", "8", "--out",
                          str(tmp_path)])
  rows = result["models"][0]["rows"]
  assert [r["k"] for r in rows] == [1, 2]
  assert all(r["t_ms"] > 0 and r["roofline_ms"] > 0 and r["ops"] > 10
             for r in rows)
  assert (tmp_path / "roofline.md").read_text().count("| 2 |") == 1
