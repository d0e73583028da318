"""Tensor-parallel models on 8 fake CPU devices (in a subprocess).

XLA_FLAGS must be set before jax initialises, and this pytest process already
has jax running on one device, so the checks run in a fresh interpreter.
"""

import os
import subprocess
import sys
import textwrap

import jax
import pytest
from jax.sharding import PartitionSpec as P

from harness.models import configs, random_gemma, random_t5
from harness.models.sharding import param_partition_specs

_SCRIPT = textwrap.dedent("""
    import dataclasses
    import jax, jax.numpy as jnp, numpy as np
    from harness import decoding
    from harness.models import configs, random_gemma, random_t5
    from harness.models.sharding import replicate_model, shard_model

    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    key = jax.random.PRNGKey(0)
    # Verifiers with 8 query heads and 4 KV heads: every weight splits by 4.
    verifiers = {
        "t5": random_t5(key, dataclasses.replace(configs.TINY_T5,
                                                 num_heads=8)),
        "gemma": random_gemma(key, dataclasses.replace(
            configs.TINY_GEMMA2, num_heads=8, num_kv_heads=4)),
    }
    drafters = {"t5": random_t5(jax.random.PRNGKey(1), configs.TINY_T5),
                "gemma": random_gemma(jax.random.PRNGKey(1),
                                      configs.TINY_GEMMA2)}
    prompt = jnp.array([3, 4, 5, 6, 7, 0, 0, 0], jnp.int32)

    @jax.jit
    def run(model):
      cache = model.prefill(prompt, jnp.int32(5), 32)
      first, cache = model.score(jnp.array([[7]]), cache)
      block, cache = model.score(jnp.array([[8, 9, 10, 11, 12, 13]]), cache)
      return jnp.concatenate([first, block], axis=1), cache

    for name, verifier in verifiers.items():
      sharded = shard_model(verifier, mesh)
      q = sharded.params["decoder" if name == "t5" else "layers"]
      q = (q["layers"][0]["self_attn"]["q"] if name == "t5"
           else q[0]["attn"]["q"])
      assert q.sharding.spec == jax.sharding.PartitionSpec(
          None, "model", None), q.sharding
      assert q.addressable_shards[0].data.shape[1] == q.shape[1] // 4
      want, _ = run(verifier)
      got, cache = run(sharded)
      kv = cache.self_k[0] if name == "t5" else cache.k[0]
      assert kv.sharding.spec[2] == "model", kv.sharding
      np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
      print(name, "logits ok")
      if name == "t5":
        continue  # one sharded decode (the Gemma 27B case) keeps this short
      drafter = replicate_model(drafters[name], mesh)
      kw = dict(gamma=3, temperature=0.0, max_decode_len=12,
                rng=jax.random.key(0))
      spec = decoding.decode("spec_decode", drafter, sharded,
                             np.array([3, 4, 5, 6, 7]), **kw)
      ref = decoding.decode("autoregressive", drafters[name], verifier,
                            np.array([3, 4, 5, 6, 7]), **kw)
      np.testing.assert_array_equal(spec.tokens, ref.tokens)
      assert int(spec.stats["verifier_calls"]) > 0
      print(name, "decode ok", np.asarray(spec.tokens))
""")


def test_partition_specs_split_heads_and_hidden_units():
  mesh = jax.sharding.Mesh(jax.devices()[:1], ("model",))
  t5 = param_partition_specs(
      random_t5(jax.random.PRNGKey(0), configs.TINY_T5).params, mesh)
  layer = t5["decoder"]["layers"][0]
  assert layer["self_attn"]["q"] == P(None, "model", None)
  assert layer["cross_attn"]["o"] == P("model", None, None)
  assert layer["mlp"]["wi_0"] == P(None, "model")
  assert layer["mlp"]["wo"] == P("model", None)
  assert layer["mlp_norm"] == P()
  assert t5["decoder"]["rel_bias"] == P()
  assert t5["lm_head"] == P(None, "model")
  gemma = param_partition_specs(
      random_gemma(jax.random.PRNGKey(0), configs.TINY_GEMMA3).params, mesh)
  assert gemma["layers"][0]["attn"]["k"] == P(None, "model", None)
  assert gemma["layers"][0]["attn"]["q_norm"] == P()
  assert gemma["embed"] == P("model", None)


def run_on_8_devices(script: str) -> str:
  """Runs `script` in a fresh interpreter on 8 fake CPU devices; its stdout
  (the test fails with its stderr if it exits non-zero)."""
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                        capture_output=True, text=True, timeout=600,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


# ~50 s: the 4-way mesh-loading test (test_models_mesh_loading.py) covers
# sharded greedy decoding in the default run.
@pytest.mark.slow
def test_sharded_verifier_matches_and_decodes_on_8_devices():
  stdout = run_on_8_devices(_SCRIPT)
  for line in ("t5 logits ok", "gemma logits ok", "gemma decode ok"):
    assert line in stdout, stdout
