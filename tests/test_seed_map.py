"""Seeds in one program by jax.vmap or jax.lax.map: the same numbers, and `auto` per backend."""

import os

import jax
import numpy as np
import pytest

from rnnlab.errors import ConfigError
from rnnlab.training import train
from tests.conftest import tiny_config


@pytest.mark.parametrize("cell,bidirectional", [
    ("vanilla", False), pytest.param("lstm", False, marks=pytest.mark.slow),
    pytest.param("gru", True, marks=pytest.mark.slow)])
def test_map_gives_the_numbers_of_vmap(cell, bidirectional):
  results = {}
  for seed_map in ("vmap", "map"):
    config = tiny_config(cell=cell, num_seeds=3, seed_map=seed_map)
    config.model.bidirectional = bidirectional
    trainer = train.Trainer(config)
    assert trainer.seed_map == seed_map
    state = trainer.init()
    for _ in range(5):
      state, metrics = trainer.train_step(state)
    results[seed_map] = (state, metrics, trainer.eval_step(state))
  (sv, mv, ev), (sm, mm, em) = results["vmap"], results["map"]
  np.testing.assert_allclose(np.asarray(mv["loss"]), np.asarray(mm["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(sv.params), jax.tree.leaves(sm.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(ev["loss"]), np.asarray(em["loss"]), rtol=1e-5)
  # Independent replicas: the three seeds differ.
  assert len(set(np.round(np.asarray(mm["loss"]), 6))) == 3


def test_auto_is_map_on_cpu_and_vmap_on_accelerators():
  assert train.resolve_seed_map("auto", 3, backend="cpu") == "map"
  assert train.resolve_seed_map("auto", 3, backend="gpu") == "vmap"
  assert train.resolve_seed_map("auto", 3, backend="tpu") == "vmap"
  assert train.resolve_seed_map("map", 1, backend="cpu") == "vmap"  # nothing to map
  assert train.resolve_seed_map("vmap", 8, backend="cpu") == "vmap"
  with pytest.raises(ConfigError, match="seed_map='scan'"):
    train.resolve_seed_map("scan", 3)


@pytest.mark.slow
def test_seeds_speedup_report(tmp_path):
  from tests.conftest import run_entry
  result = run_entry("experiments.seeds_speedup", "--config=configs/compare.py:quick",
                     "--cells=gru", "--seeds=2", "--timed_steps=1", "--repeats=1", "--length=5",
                     "--workers=2", f"--results_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-2000:]
  md = open(tmp_path / "seeds_speedup.md").read()
  header = next(line for line in md.splitlines() if line.startswith("| cell |"))
  row = next(line for line in md.splitlines() if line.startswith("| gru |"))
  cols = [c.strip() for c in header.strip("|").split("|")]
  vals = dict(zip(cols, [c.strip() for c in row.strip("|").split("|")]))
  assert vals["S"] == "2" and vals["auto"] == "map"
  for key in ("ms/step 1 seed", "ms/step vmap", "ms/step map", "x vmap", "x map"):
    assert float(vals[key]) > 0
  assert float(vals["x auto"]) == float(vals["x map"])
  for key in ("x vmap", "x map"):  # one round: its range is the one ratio
    low, high = (float(x) for x in vals[f"{key}, rounds"].split("-"))
    assert low == high == pytest.approx(float(vals[key]), abs=0.006)
  # Timed as the first of a 2-worker study's workers: pinned to its half of the CPUs.
  pinned = "pinned to CPU" in md and "as one of the 2 workers" in md
  assert pinned == (len(os.sched_getaffinity(0)) >= 2)
