

def test_a_bigram_table_with_fewer_rows_than_tokens_wraps_its_rows():
  # The loop-cost benchmarks' null models at a 262k vocabulary keep R rows.
  import jax.numpy as jnp
  import numpy as np
  from harness.models.toy import BigramLM
  table = np.arange(4 * 10, dtype=np.float32).reshape(4, 10)
  model = BigramLM(table, eos_id=0)
  assert model.vocab_size == 10
  cache = model.prefill(jnp.array([1, 2]), 2, 8)
  logits, _ = model.score(jnp.array([[6, 3]]), cache)
  np.testing.assert_array_equal(logits[0, 0], table[2])  # 6 % 4
  np.testing.assert_array_equal(logits[0, 1], table[3])
  np.testing.assert_array_equal(model.next_token_logits(9), table[1])
