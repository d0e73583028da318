"""The real Gemma 3 270M (Q4_K_M GGUF from the optional `model` extra).

Slow: the file is assembled into the cache (~/.cache/harness/gemma3-270m, or
$HARNESS_CACHE_DIR) and dequantised on every load. The parity test also needs
the `ref` extra (torch, transformers) plus `accelerate`.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.decoding import decode
from harness.models import gguf as hgguf
from harness.models import load_pretrained
from harness.tasks import data_root

pytest.importorskip("gguf")
pytest.importorskip(hgguf.GEMMA3_270M_PACKAGE)

pytestmark = pytest.mark.slow

PARITY_ATOL = 1e-4
FRANCE = "The capital of France is"
# Real text of several kinds: a GSM8K solution, German news, Python code.
NUM_LINES_PER_SOURCE = 40


@pytest.fixture(scope="module")
def folder():
  return hgguf.gemma3_270m_dir()


@pytest.fixture(scope="module")
def pretrained(folder):
  return load_pretrained(folder)


def _real_lines() -> list[str]:
  root = data_root()
  lines = []
  with open(os.path.join(root, "gsm8k", "train.jsonl")) as f:
    for _, row in zip(range(NUM_LINES_PER_SOURCE), f):
      ex = json.loads(row)
      lines.append(ex["question"] + "\n" + ex["answer"])
  with open(os.path.join(root, "wmt_newstest_2008_2012_ende",
                         "newstest2010.de")) as f:
    lines += [next(f).rstrip("\n") for _ in range(NUM_LINES_PER_SOURCE)]
  with open(os.path.join(root, "mbpp", "mbpp.jsonl")) as f:
    for _, row in zip(range(NUM_LINES_PER_SOURCE), f):
      lines.append(json.loads(row)["code"])
  return lines


def _greedy(model, tokenizer, text: str, num: int) -> str:
  out = decode("autoregressive", model, model,
               jnp.asarray(tokenizer.encode(text, add_bos=True)), gamma=1,
               temperature=0.0, max_decode_len=num, rng=jax.random.PRNGKey(0))
  return tokenizer.decode(np.asarray(out.tokens)[:int(out.num_tokens)])


def test_config(pretrained):
  c = pretrained.model.config
  assert (c.num_layers, c.d_model, c.d_ff, c.num_heads, c.num_kv_heads,
          c.head_dim, c.vocab_size, c.sliding_window) == (
              18, 640, 2048, 4, 1, 256, 262144, 512)
  assert (c.rope_base_global, c.rope_base_local) == (1e6, 1e4)
  assert pretrained.tokenizer.encode(FRANCE, add_bos=True) == [
      2, 818, 5279, 529, 7001, 563]


def test_france_smoke(pretrained):
  model, _, tokenizer = pretrained
  # The pretrained 270M continues "... is" with " the capital of the country
  # of France"; " Paris" is in its top 5, and first after a one-shot hint.
  logits = model.forward_logits(None, jnp.asarray(
      [tokenizer.encode(FRANCE, add_bos=True)]))[0, -1]
  top5 = [tokenizer.decode([int(i)]) for i in jnp.argsort(-logits)[:5]]
  assert " Paris" in top5
  hinted = _greedy(model, tokenizer,
                   "The capital of Italy is Rome. " + FRANCE, 4)
  assert hinted.startswith(" Paris"), hinted
  germany = _greedy(model, tokenizer,
                    "The capital of France is Paris. The capital of Germany "
                    "is", 4)
  assert germany.startswith(" Berlin"), germany
  continuation = _greedy(model, tokenizer, FRANCE, 12)
  assert "France" in continuation, continuation


def test_parity_with_transformers(folder, pretrained):
  """Our float32 logits vs transformers' own GGUF loading of the same file.

  The reference runs in float64: transformers in float32 is itself ~8e-5
  away from it on these texts (float32 rounding through 18 layers, logits up
  to ~30), as far as we are from float32 transformers in the worst case.
  """
  pytest.importorskip("accelerate")
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  name = os.path.basename(hgguf.find_gguf(folder))
  ref = transformers.AutoModelForCausalLM.from_pretrained(
      folder, gguf_file=name, dtype=torch.float64)
  ref.eval()
  # transformers refuses .float() on a GGUF-loaded model: rebuild in float32.
  ref32 = type(ref)(ref.config).to(torch.float32)
  missing, unexpected = ref32.load_state_dict(
      {k: v.float() for k, v in ref.state_dict().items()}, strict=False)
  assert set(missing) <= {"lm_head.weight"} and not unexpected
  ref32.tie_weights()
  ref32.eval()
  model, _, tokenizer = pretrained
  lines = _real_lines()
  forward = jax.jit(lambda m, x: m.forward_logits(None, x))
  worst, worst32 = 0.0, 0.0
  for text in (FRANCE, lines[0], lines[NUM_LINES_PER_SOURCE],
               lines[2 * NUM_LINES_PER_SOURCE]):
    ids = torch.tensor([tokenizer.encode(text, add_bos=True)])
    with torch.no_grad():
      want = ref(ids).logits[0].numpy()
      want32 = ref32(ids).logits[0].double().numpy()
    ours = np.asarray(forward(model, jnp.asarray(ids.numpy()))[0])
    worst = max(worst, float(np.abs(ours - want).max()))
    worst32 = max(worst32, float(np.abs(ours - want32).max()))
  assert worst < PARITY_ATOL, worst
  assert worst32 < 2 * PARITY_ATOL, worst32
  ref_tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
  for text in lines:
    assert tokenizer.encode(text, add_bos=True) == ref_tok(text)[
        "input_ids"], text


def _drafter_dir(verifier, tokenizer, tmp_path) -> str:
  """The subset-vocabulary drafter from the cache (`make gemma-table2`),
  else an untrained one."""
  cached = os.path.join(hgguf.cache_dir(), "gemma3-270m-drafter-subset")
  if os.path.exists(os.path.join(cached, "config.json")):
    return cached
  from harness.models import save_pretrained
  from harness.training import distill
  drafter = distill.init_drafter(verifier, distill.drafter_config(
      verifier.config, d_model=64, num_layers=2, num_heads=1, d_ff=128))
  save_pretrained(drafter, tmp_path / "drafter", tokenizer)
  return str(tmp_path / "drafter")


def test_one_suite_end_to_end(folder, pretrained, tmp_path):
  """TriviaQA 1-shot, 20 examples: references and one cascade, via the CLI."""
  from harness.__main__ import main
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  drafter = _drafter_dir(pretrained.model, pretrained.tokenizer, tmp_path)
  results = tmp_path / "results"
  code = main([
      "sweep", "--gin_file",
      os.path.join(repo, "experiments", "gemma_fewshot_offline.gin"),
      "--no_progress", f"--gin.RESULTS_DIR='{results}'",
      f"--gin.DRAFTER_CHECKPOINT='{drafter}'",
      f"--gin.VERIFIER_CHECKPOINT='{folder}'",
      "--gin.TASKS=[@gemma_triviaqa/TaskRun()]", "--gin.NUM_EXAMPLES=20",
      "--gin.METHODS=[@spec_cascade_token/MethodGrid()]",
      "--gin.spec_cascade_token/MethodGrid.alphas=[0.1]", "--gin.GAMMAS=[1]",
      "--gin.NUM_TRIALS=1", "--gin.CALIBRATION_CALLS=2"])
  assert code == 0
  cells = results / "gemma_fewshot_offline" / "cells"
  summaries = {p.name.split("__")[1]: json.loads(p.read_text())
               for p in cells.glob("*.json")}
  assert set(summaries) == {"autoregressive-verifier",
                            "autoregressive-drafter", "spec_cascade_token"}
  for name, summary in summaries.items():
    assert summary["cell"]["num_examples"] == 20, name
    assert summary["quality"]["exact_match"] is not None, name
  cascade = summaries["spec_cascade_token"]
  assert 0.0 <= cascade["stats"]["rejection_rate"] <= 1.0
  assert cascade["relative_latency"] > 0
