"""Regression tests for bugs the fault suite found (fast, in-process).

Each names the cause of a bad input in one line instead of a bare
``UnicodeDecodeError``, ``SafetensorError`` or silent acceptance.
"""

import gzip
import pathlib

import jax
import pytest

from harness import models
from harness.models import configs
from harness.testing import tokenizers
from harness.edge import errors
from harness.runner import cli
from harness.runner import gin_config
from harness.tasks import datasets
from harness.tasks.spec import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "smoke.gin")


# --- Data files ---------------------------------------------------------------


def test_jsonl_non_utf8_names_file_and_line(tmp_path):
  path = tmp_path / "x.jsonl"
  path.write_bytes(b'{"a": "ok"}\n{"a": "\xff"}\n')
  with pytest.raises(DataError, match=r"x\.jsonl:2: not UTF-8 text"):
    list(datasets.read_jsonl(path))


def test_jsonl_empty_file_is_an_error(tmp_path):
  path = tmp_path / "empty.jsonl"
  path.write_bytes(b"\n\n")
  with pytest.raises(DataError, match=r"empty\.jsonl: empty file"):
    list(datasets.read_jsonl(path))


def test_truncated_gzip_names_file(tmp_path):
  path = tmp_path / "val.de.gz"
  path.write_bytes(gzip.compress(b"eins\nzwei\n" * 200)[:40])
  with pytest.raises(DataError, match=r"val\.de\.gz: corrupt or truncated"):
    datasets._read_lines(path)


def test_read_lines_keeps_text_mode_semantics(tmp_path):
  path = tmp_path / "a.txt"
  path.write_bytes("ä\r\nb\nc".encode())
  assert datasets._read_lines(path) == ["ä", "b", "c"]
  path.write_bytes(b"a\nb\n")
  assert datasets._read_lines(path) == ["a", "b"]
  path.write_bytes(b"a\n\xffb\n")
  with pytest.raises(DataError, match=r"a\.txt:2: not UTF-8"):
    datasets._read_lines(path)


# --- Checkpoints --------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  path = tmp_path_factory.mktemp("ckpt") / "model"
  tok = tokenizers.train_tiny_sentencepiece(path.parent / "spiece.model")
  tokenizer = models.Tokenizer(tok)
  model = models.random_t5(jax.random.key(0), configs.TINY_T5,
                           tokenizer_id=tokenizer.id)
  models.save_pretrained(model, path, tokenizer)
  return path


def test_corrupt_safetensors_header_names_file(checkpoint, tmp_path):
  bad = tmp_path / "bad"
  bad.mkdir()
  for f in checkpoint.iterdir():
    (bad / f.name).write_bytes(f.read_bytes())
  weights = bad / "model.safetensors"
  data = bytearray(weights.read_bytes())
  data[:8] = (1 << 40).to_bytes(8, "little")
  weights.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=r"model\.safetensors: corrupt"):
    models.load_pretrained(bad)
  weights.write_bytes(bytes(data[8:len(data) // 2]))
  with pytest.raises(ValueError, match=r"model\.safetensors: corrupt"):
    models.load_pretrained(bad)


def test_invalid_config_json_names_file(checkpoint, tmp_path):
  bad = tmp_path / "bad"
  bad.mkdir()
  for f in checkpoint.iterdir():
    (bad / f.name).write_bytes(f.read_bytes())
  (bad / "config.json").write_text('{"model_type": ')
  with pytest.raises(ValueError, match=r"config\.json: invalid JSON"):
    models.load_pretrained(bad)


def test_good_checkpoint_still_loads(checkpoint):
  assert models.load_pretrained(checkpoint).model.vocab_size == 128


# --- Gin and the command line -------------------------------------------------


def test_non_utf8_gin_file_names_it(tmp_path):
  path = tmp_path / "bad.gin"
  path.write_bytes(b"EXPERIMENT_NAME = '\xff'\n")
  with pytest.raises(gin_config.ConfigError, match=r"bad\.gin: not UTF-8"):
    gin_config.parse([str(path)])


def test_unused_macro_override_is_reported(tmp_path):
  results = f"RESULTS_DIR='{tmp_path}'"
  unused = []
  gin_config.parse([SMOKE], [results, "SEEED=1", "SEED=2", "FOO=3",
                             "Experiment.num_trials=%FOO"], unused)
  assert unused == ["--gin.SEEED=1: macro SEEED is set but nothing uses it "
                    "(did you mean SEED?)"]


def test_cli_refuses_unused_macro_unless_lenient(tmp_path, capsys):
  code = cli._run(_args(tmp_path, ["--gin.SEEED=1"]))
  assert code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: --gin.SEEED=1") and "Traceback" not in err
  args = _args(tmp_path, ["--gin.SEEED=1"])
  args.gin_lenient = True
  assert cli._run(args) == 0
  err = capsys.readouterr().err
  assert "warning: --gin.SEEED=1" in err and "Traceback" not in err


def _args(tmp_path, gin):
  import argparse  # pylint: disable=g-import-not-at-top
  return argparse.Namespace(
      gin_file=[SMOKE], gin_binding=[], gin=gin + [
          f"--gin.RESULTS_DIR='{tmp_path}'"], dry_run=True, only=[],
      shard="0/1", no_progress=True, debug=False)


def test_key_error_message_is_not_quoted(capsys):
  errors.fail_one_line(KeyError("checkpoint x has no tensor 'w'"), 1, debug=False)
  assert capsys.readouterr().err == (
      "error: checkpoint x has no tensor 'w'\n")


# --- Results store -------------------------------------------------------------


def test_failed_write_names_the_file_and_leaves_no_temp(tmp_path, monkeypatch):
  from harness.results import store  # pylint: disable=g-import-not-at-top

  def full(fd):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(store.storage.os, "fsync", full)
  path = tmp_path / "cells" / "x.json"
  with pytest.raises(OSError, match=r"No space left on device: cannot "
                     r"write .*x\.json") as info:
    store.atomic_write_text(str(path), "{}")
  assert info.value.errno == 28
  assert not list((tmp_path / "cells").iterdir())


def test_cell_progress_lines_are_not_extra_error_output():
  """A run that finished cells before failing prints their progress lines on
  stderr; the one-error-line check must still pass (disk full after 1 cell)."""
  from tools.faults import common
  stderr = ("multi30k_ende__autoregressive-verifier__T1_P1__52510154: "
            "bleu=3.10 latency=4.20ms rel=1 model_rel=1 accept=- defer=- "
            "tokens/ex=9.0\n"
            "error: [Errno 28] No space left on device: cannot write x.json\n")
  check = common.check_error(common.ChildResult(1, "", stderr, 0.1))
  assert check.one_line and check.error_line.startswith("error: [Errno 28]")
  check = common.check_error(common.ChildResult(
      1, "", "something else\n" + stderr, 0.1))
  assert not check.one_line


def test_section_json_serialises_dataclasses_inside_dicts(tmp_path):
  from tools.faults import suite
  from tools.faults.numerics import DecodeOutcome
  import dataclasses
  fields = [f.name for f in dataclasses.fields(DecodeOutcome)]
  outcome = DecodeOutcome(**{f: (0 if f != "method" else "m") for f in fields})
  out = suite._jsonable({"decodes": [outcome]})
  import json
  assert json.loads(json.dumps(out))["decodes"][0]["method"] == "m"
