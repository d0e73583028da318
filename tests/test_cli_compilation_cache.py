"""The opt-in persistent compilation cache of `run` / `sweep`."""

import os

import jax

from harness.__main__ import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "experiments", "smoke.gin")


def _sweep(tmp_path, *extra):
  return main(["sweep", "--gin_file", SMOKE, "--dry_run",
               f"--gin.RESULTS_DIR='{tmp_path}/results'", *extra])


def test_cache_is_off_unless_asked(tmp_path, monkeypatch):
  monkeypatch.delenv("HARNESS_COMPILATION_CACHE", raising=False)
  before = jax.config.jax_compilation_cache_dir
  _sweep(tmp_path)
  assert jax.config.jax_compilation_cache_dir == before


def test_flag_and_environment_turn_it_on(tmp_path, monkeypatch):
  before = jax.config.jax_compilation_cache_dir
  try:
    _sweep(tmp_path, "--compilation_cache_dir", str(tmp_path / "flag"))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "flag")
    monkeypatch.setenv("HARNESS_COMPILATION_CACHE", str(tmp_path / "env"))
    _sweep(tmp_path)
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "env")
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
