"""Loading straight into a 4-way model-parallel mesh on 8 fake CPU devices.

A Gemma-2-shaped and a T5-v1.1-shaped model (widths scaled down, 8 query
heads so every weight splits by 4) are saved as index-sharded bfloat16
safetensors and loaded onto a ("data" 2, "model" 4) mesh. A hook records,
after each tensor, the bytes every device holds (from the addressable shards
of every live jax array): each device must end with exactly 1/4 of the split
parameters plus the replicated ones, and never hold more than that plus one
tensor. Loading the same files onto one device instead must break that bound
(the measurement can fail). Greedy decoding with the sharded verifier gives
the unsharded model's tokens.

XLA_FLAGS must be set before jax initialises, so the checks run in a fresh
interpreter (as in test_sharding.py).
"""

import pytest
import textwrap

from tests.test_sharding import run_on_8_devices

_SCRIPT = textwrap.dedent("""
    import json, os, sys, tempfile
    import jax, jax.numpy as jnp, numpy as np
    from harness import decoding
    from harness.models import (GemmaConfig, T5Config, load_pretrained,
                                random_gemma, random_t5, save_pretrained)
    from harness.models import weights
    from harness.models.sharding import param_partition_specs

    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    models = {
        "gemma2": random_gemma(jax.random.PRNGKey(0), GemmaConfig(
            version=2, vocab_size=256, d_model=64, num_layers=4, num_heads=8,
            num_kv_heads=4, head_dim=16, d_ff=128,
            query_pre_attn_scalar=16.0, sliding_window=6)),
        "t5": random_t5(jax.random.PRNGKey(1), T5Config(
            vocab_size=128, d_model=64, d_kv=16, d_ff=128, num_heads=8,
            num_encoder_layers=2, num_decoder_layers=2)),
    }
    tmp = tempfile.mkdtemp()
    report = {}
    for name, model in models.items():
      bf16 = model.replace(params=jax.tree.map(
          lambda x: x.astype(jnp.bfloat16), model.params))
      directory = os.path.join(tmp, name)
      save_pretrained(bf16, directory, max_shard_bytes=40_000)
      index = json.load(open(os.path.join(directory,
                                          "model.safetensors.index.json")))
      assert len(set(index["weight_map"].values())) > 2, index
      assert not os.path.exists(os.path.join(directory, "model.safetensors"))

      def load(target_mesh):
        history = []
        base = weights.device_bytes()
        def hook(tensor_name, array):
          now = weights.device_bytes()
          history.append({d: now.get(d, 0) - base.get(d, 0)
                          for d in jax.devices()})
        loaded = load_pretrained(directory, require_tokenizer=False,
                                 mesh=target_mesh, on_tensor=hook)
        return loaded.model, history

      sharded, history = load(mesh)
      params = sharded.params
      assert {x.dtype for x in jax.tree.leaves(params)} == {
          jnp.dtype(jnp.bfloat16)}  # the stored dtype is kept
      specs = param_partition_specs(params, mesh)
      leaves = jax.tree.leaves(params)
      split = [any(s) for s in jax.tree.leaves(
          specs, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))]
      assert sum(split) > len(split) // 2, "most weights must be split"
      share = sum(x.nbytes // 4 if s else x.nbytes
                  for x, s in zip(leaves, split))
      largest = max(x.nbytes for x in leaves)
      held = weights.device_bytes(leaves)  # from the arrays' shards
      assert set(held) == set(jax.devices())
      assert all(n == share for n in held.values()), (held, share)
      peak = max(max(step.values()) for step in history)
      assert len(history) == len(leaves)
      assert peak <= share + largest, (peak, share, largest)
      # Control: one device gets everything, which the bound rejects.
      single, control = load(None)
      control_peak = max(max(step.values()) for step in control)
      assert control_peak > share + largest, (control_peak, share, largest)
      report[name] = dict(share=share, largest=largest, peak=peak,
                          total=sum(x.nbytes for x in leaves),
                          single_device_peak=control_peak)

      # Greedy decoding: the sharded verifier gives the unsharded tokens.
      prompt = np.array([3, 4, 5, 6, 7, 8, 9], np.int32)
      kw = dict(temperature=0.0, max_decode_len=12, rng=jax.random.key(0))
      ref = decoding.decode("autoregressive", single, single, prompt, **kw)
      got = decoding.decode("autoregressive", single, sharded, prompt, **kw)
      np.testing.assert_array_equal(np.asarray(got.tokens),
                                    np.asarray(ref.tokens))
      assert int(ref.num_tokens) > 0
      print(name, "ok", np.asarray(got.tokens).tolist())
    print("REPORT", json.dumps(report))
""")


@pytest.mark.slow  # default-suite budget (make test-slow); ~60 s
def test_sharded_safetensors_load_into_4_way_mesh():
  stdout = run_on_8_devices(_SCRIPT)
  for line in ("gemma2 ok", "t5 ok", "REPORT"):
    assert line in stdout, stdout
  print(stdout)
