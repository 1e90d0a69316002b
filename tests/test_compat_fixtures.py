"""Workdirs written by rnnlab before the package moved into its wings (commit 671927f) still load,
evaluate to the numbers they recorded, and the same config trains to the same metrics.

Fixtures: tests/fixtures/workdirs_671927f/{copy_lstm, adding_gru_bi}, made on the 2-core CPU
by `python -m experiments.train` at 671927f with the configs they hold (TensorBoard events left out).
"""

import json
import os
import shutil

import pytest

from rnnlab.training import evaluation, train

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "workdirs_671927f")
NAMES = ["copy_lstm", "adding_gru_bi"]
TIMING = ("steps_per_sec", "wall_time_sec")


def _rows(path):
  with open(path) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


@pytest.mark.parametrize("name", NAMES)
def test_old_workdir_evaluates_to_its_recorded_metrics(name, tmp_path):
  workdir = str(tmp_path / name)
  shutil.copytree(os.path.join(FIXTURES, name), workdir)
  with open(os.path.join(workdir, "summary.json")) as f:
    final = json.load(f)["final"]
  metrics = evaluation.evaluate_workdir(workdir)
  per_seed = final.pop("eval_per_seed", {})
  assert final
  for key, value in final.items():
    assert metrics[key.removeprefix("eval_")] == pytest.approx(value, rel=1e-6), key
  for key, values in per_seed.items():
    assert metrics[f"{key}_per_seed"] == pytest.approx(values, rel=1e-6), key


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n == "adding_gru_bi" else n for n in NAMES])
def test_same_config_trains_to_the_same_metrics(name, tmp_path):
  """The same rows, keys and steps, and every number to float32 rounding: XLA:CPU's kernels
  follow the processor's vector width, so a machine with AVX-512 rounds otherwise than the AVX2
  one that made the fixtures (up to 6.2e-7 relative on the 40 steps here)."""
  config = train.load_config(os.path.join(FIXTURES, name))
  # The fixtures' seeds were vmapped (the only way then); `auto` now maps them with lax.map on
  # CPU, equal to float rounding (tests/test_seed_map.py), so the comparison pins vmap.
  config.train.seed_map = "vmap"
  workdir = str(tmp_path / name)
  train.train_and_evaluate(config, workdir)
  got = _rows(os.path.join(workdir, "metrics.jsonl"))
  want = _rows(os.path.join(FIXTURES, name, "metrics.jsonl"))
  assert _first_difference(got, want) is None


def _first_difference(got, want, where="rows"):
  """Where `got` differs from `want` beyond float32 rounding (structure, keys and non-floats
  exactly), or None."""
  if isinstance(want, dict):
    if not isinstance(got, dict) or got.keys() != want.keys():
      return f"{where}: {got!r} != {want!r}"
    diffs = (_first_difference(got[k], want[k], f"{where}.{k}") for k in want)
  elif isinstance(want, list):
    if not isinstance(got, list) or len(got) != len(want):
      return f"{where}: {got!r} != {want!r}"
    diffs = (_first_difference(g, w, f"{where}[{i}]") for i, (g, w) in enumerate(zip(got, want)))
  elif isinstance(want, float):
    return None if got == pytest.approx(want, rel=1e-5, abs=1e-7) else f"{where}: {got} != {want}"
  else:
    return None if got == want else f"{where}: {got!r} != {want!r}"
  return next((d for d in diffs if d is not None), None)
