"""Weight products at batch size 1 on XLA:CPU through a small compiled kernel.

A decoder at batch size 1 multiplies 1 to 8 activation rows (the tokens of
one `score` call) by each weight matrix. Such a product is memory-bound: its
floor is the weight bytes over the memory bandwidth, whatever the row count.
XLA:CPU's dot falls off that floor as soon as there are two rows or more (it
packs or re-reads the weights; docs/bench.md gives the measured figures), so
scoring gamma + 1 tokens cost about twice scoring one, which rules out
speculative decoding on a CPU before any drafter is run.

`matmul` sends such products to `csrc/small_m_matmul.cc`, an XLA FFI handler
that reads every weight once and applies it to all rows from registers. The
kernel is compiled on first use with the host's C++ compiler for the host's
own instruction set and cached (`$HARNESS_KERNEL_CACHE`, default
`~/.cache/harness/kernels`), keyed by the source, the flags, the JAX version
and the CPU's feature flags. Anything else (more than `MAX_ROWS` rows, a
non-float32 dtype, a device mesh, a GPU or TPU) takes `jnp.dot` exactly as
before; so does everything when the kernel can't be built (one warning) or
when `HARNESS_CPU_KERNELS=0`.

Numerics: float32 products with float32 accumulation, like XLA's dot, in a
different but fixed summation order. A row's result does not depend on how
many rows share the call, so a speculative verifier call and an
autoregressive step give bit-identical logits for the same prefix.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.resources
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import warnings

import jax
import jax.numpy as jnp
import numpy as np

# Largest row count sent to the kernel; larger products (prefill, training)
# are compute-bound and XLA's GEMM is the right tool for them.
MAX_ROWS = 8

_TARGET = "harness_small_m_matmul"
_STREAM_TARGET = "harness_stream_sum"
_SOURCE = "small_m_matmul.cc"
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
ENV_SWITCH = "HARNESS_CPU_KERNELS"
ENV_CACHE = "HARNESS_KERNEL_CACHE"

# Layout codes understood by the kernel.
_NN = 0  # w [D, N]
_NT = 1  # w [N, D]


def _source() -> bytes:
  return (importlib.resources.files("harness.models") / "csrc"
          / _SOURCE).read_bytes()


def _cpu_flags() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith(("flags", "Features")):
          return line
  except OSError:
    pass
  return platform.processor() + platform.machine()


def _compiler() -> str | None:
  for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
    if name and shutil.which(name):
      return name
  return None


def _cache_dir() -> pathlib.Path:
  env = os.environ.get(ENV_CACHE)
  if env:
    return pathlib.Path(env)
  return pathlib.Path.home() / ".cache" / "harness" / "kernels"


def _build() -> pathlib.Path:
  """Compiles the kernel once per (source, flags, JAX, CPU); returns the .so."""
  cxx = _compiler()
  if cxx is None:
    raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
  source = _source()
  key = hashlib.sha256(b"\0".join([
      source, " ".join(_FLAGS).encode(), jax.__version__.encode(),
      _cpu_flags().encode(), cxx.encode()])).hexdigest()[:16]
  cache = _cache_dir()
  lib = cache / f"small_m_matmul-{key}.so"
  if lib.exists():
    return lib
  cache.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=cache) as tmp:
    src = pathlib.Path(tmp) / _SOURCE
    src.write_bytes(source)
    out = pathlib.Path(tmp) / lib.name
    cmd = [cxx, *_FLAGS, f"-I{jax.ffi.include_dir()}", str(src), "-o",
           str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
      last = (done.stderr.strip().splitlines() or ["?"])[-1]
      raise RuntimeError(f"{cxx} failed: {last}")
    os.replace(out, lib)  # atomic: concurrent builders agree
  return lib


@functools.cache
def _registered() -> str | None:
  """Builds and registers the FFI targets; None (and one warning) on failure.

  Independent of `HARNESS_CPU_KERNELS`, so that the roofline's bandwidth
  probe is the same with the kernel switched off.
  """
  try:
    lib = ctypes.cdll.LoadLibrary(str(_build()))
    jax.ffi.register_ffi_target(
        _TARGET, jax.ffi.pycapsule(lib.HarnessSmallMMatmul), platform="cpu")
    jax.ffi.register_ffi_target(
        _STREAM_TARGET, jax.ffi.pycapsule(lib.HarnessStreamSum),
        platform="cpu")
  except Exception as e:  # pylint: disable=broad-except
    warnings.warn(f"small-M CPU kernel unavailable, using XLA's dot: {e}",
                  RuntimeWarning, stacklevel=3)
    return None
  return _TARGET


def library_available() -> bool:
  """Whether the kernel library is built and registered (switch aside)."""
  return _registered() is not None


def _switched_on() -> bool:
  return os.environ.get(ENV_SWITCH, "1") != "0"


def available() -> bool:
  """Whether products of <= MAX_ROWS rows on the CPU use the kernel."""
  return _switched_on() and _registered() is not None


def status() -> str:
  """One word for provenance and the bench: "on", "off" or "unavailable"."""
  if not _switched_on():
    return "off"
  return "on" if available() else "unavailable"


def stream_sum(x: jax.Array) -> jax.Array:
  """Sum of a float32 array by a pure streaming read (the roofline's
  bandwidth probe); requires `library_available()`."""
  if _registered() is None:
    raise RuntimeError("the CPU kernel library is not available")
  # A side effect keeps XLA from hoisting a loop-invariant read.
  call = jax.ffi.ffi_call(_STREAM_TARGET,
                          jax.ShapeDtypeStruct((1,), jnp.float32),
                          has_side_effect=True)
  return call(x.reshape(-1))[0]


def _kernel(x2: jax.Array, w2: jax.Array, layout: int) -> jax.Array:
  n = w2.shape[1] if layout == _NN else w2.shape[0]
  call = jax.ffi.ffi_call(
      _TARGET, jax.ShapeDtypeStruct((x2.shape[0], n), jnp.float32),
      vmap_method="sequential")
  return call(x2, w2, layout=np.int64(layout))


def _reference(x2: jax.Array, w2: jax.Array, layout: int,
               out_dtype=None) -> jax.Array:
  return jnp.matmul(x2, w2 if layout == _NN else w2.T,
                    preferred_element_type=out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _product(x2: jax.Array, w2: jax.Array, layout: int) -> jax.Array:
  return jax.lax.platform_dependent(
      x2, w2, cpu=functools.partial(_kernel, layout=layout),
      default=functools.partial(_reference, layout=layout))


def _product_fwd(x2, w2, layout):
  return _product(x2, w2, layout), (x2, w2)


def _product_bwd(layout, res, g):
  x2, w2 = res
  wn = w2 if layout == _NN else w2.T  # [D, N]
  dw = x2.T @ g
  return g @ wn.T, (dw if layout == _NN else dw.T)


_product.defvjp(_product_fwd, _product_bwd)


def matmul(x: jax.Array, w: jax.Array, *, contract: int = 1,
           transposed: bool = False, enabled: bool = True,
           out_dtype=None) -> jax.Array:
  """x [..., C...] times w, contracting x's last `contract` axes.

  Args:
    x: activations [..., C1, ..., Cc].
    w: weights [C1, ..., Cc, O...] (`transposed=False`), or [O, C] with the
      contraction last (`transposed=True`, e.g. a tied embedding [V, D]).
    contract: how many trailing axes of x are contracted (1 or more).
    transposed: w's layout, as above (only with one output axis).
    enabled: False forces `jnp.dot` (a model placed on a device mesh).
    out_dtype: the result dtype (`preferred_element_type`); default x's.

  Returns:
    [..., O...]; float32 accumulation for float32 inputs in every path.
  """
  lead = x.shape[:x.ndim - contract]
  c = int(np.prod(x.shape[x.ndim - contract:], dtype=np.int64))
  rows = int(np.prod(lead, dtype=np.int64))
  if transposed:
    out_shape = (w.shape[0],)
    w2 = w.reshape(w.shape[0], c)
  else:
    out_shape = w.shape[contract:]
    w2 = w.reshape(c, -1)
  x2 = x.reshape(rows, c)
  layout = _NT if transposed else _NN
  use = (enabled and 0 < rows <= MAX_ROWS and x.dtype == jnp.float32
         and w.dtype == jnp.float32
         and out_dtype in (None, jnp.float32)
         and jax.default_backend() == "cpu" and available())
  if use:
    y = _product(x2, w2, layout)
  else:
    y = _reference(x2, w2, layout, out_dtype)
  return y.reshape(*lead, *out_shape)
