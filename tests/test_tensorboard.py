"""TensorBoard event files: read back with TensorBoard's own reader, they equal metrics.jsonl.

Every run writes workdir/tensorboard/ (mean values, tags = metrics.jsonl keys) and, with several
seeds, workdir/tensorboard/seed_{s}/. A resumed run leaves each step in the files once.
"""

import os
import shutil
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from rnnlab.training import checkpoint, metrics_log, tensorboard, train
from tests.conftest import tiny_config


def _read(path):
  """{tag: [(step, value), ...]} of the event files directly in `path` (TensorBoard's reader)."""
  acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(rows, run=""):
  """{tag: [(step, value), ...]} that metrics.jsonl's rows give for one run subdirectory."""
  out = {}
  for row in rows:
    for tag, value in tensorboard.row_scalars(row).get(run, {}).items():
      out.setdefault(tag, []).append((row["step"], value))
  return out


def _assert_same(got, want):
  assert sorted(got) == sorted(want)
  for tag in want:
    assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
    np.testing.assert_allclose([v for _, v in got[tag]], [v for _, v in want[tag]],
                               rtol=1e-6, err_msg=tag)  # stored as float32


def _assert_run_matches(workdir, num_seeds):
  """The event files of the run and of each seed equal what metrics.jsonl's rows give."""
  rows = metrics_log.read(workdir)
  root = tensorboard.logdir(workdir)
  _assert_same(_read(root), _expected(rows))
  seed_dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  assert seed_dirs == [f"seed_{s}" for s in range(num_seeds)]
  last = [r for r in rows if "per_seed" in r][-1]
  for s in range(num_seeds):
    got = _read(os.path.join(root, f"seed_{s}"))
    assert set(got) == {"loss", "accuracy", "grad_norm", "eval_loss", "eval_accuracy"}
    _assert_same(got, _expected(rows, f"seed_{s}"))
    assert got["loss"][-1][0] == last["step"]
    assert got["loss"][-1][1] == pytest.approx(last["per_seed"]["loss"][s], rel=1e-6)
  return rows


def test_row_scalars_layout():
  row = {"step": 5, "loss": 1.5, "accuracy": 0.25, "note": "x", "nested": {"a": 2},
         "per_seed": {"loss": [1.0, 2.0], "accuracy": [0.0, 0.5]}}
  assert tensorboard.row_scalars(row) == {
      "": {"loss": 1.5, "accuracy": 0.25, "nested/a": 2.0},
      "seed_0": {"loss": 1.0, "accuracy": 0.0}, "seed_1": {"loss": 2.0, "accuracy": 0.5}}
  evals = tensorboard.row_scalars({"step": 10, "eval_loss": 0.5, "eval_per_seed": {"loss": [1, 0]}})
  assert evals == {"": {"eval_loss": 0.5}, "seed_0": {"eval_loss": 1.0},
                   "seed_1": {"eval_loss": 0.0}}


@pytest.mark.slow
def test_event_files_equal_metrics_jsonl_also_after_a_resume(tmp_path):
  workdir = str(tmp_path)
  config = tiny_config(num_steps=20, checkpoint_every=10, log_every=5, eval_every=10,
                       num_seeds=2)
  train.train_and_evaluate(config, workdir)
  first = _read(tensorboard.logdir(workdir))
  assert {"loss", "accuracy", "grad_norm", "learning_rate", "steps_per_sec", "eval_loss",
          "eval_accuracy"} <= set(first)
  assert [s for s, _ in first["loss"]] == [5, 10, 15, 20]
  assert [s for s, _ in first["eval_loss"]] == [10, 20]
  _assert_run_matches(workdir, num_seeds=2)

  # A kill after step 20's rows but before its checkpoint: the run resumes from step 10 and logs
  # steps 15 and 20 again.
  shutil.rmtree(os.path.join(workdir, checkpoint.CHECKPOINT_DIR, "20"))
  assert checkpoint.Checkpointer(workdir).latest_step() == 10
  train.train_and_evaluate(config, workdir)
  rows = _assert_run_matches(workdir, num_seeds=2)
  assert [r["step"] for r in rows if "loss" in r] == [5, 10, 15, 20]
  # Steps up to the checkpoint are the first session's events, kept as they were.
  assert _read(tensorboard.logdir(workdir))["loss"][:2] == first["loss"][:2]


def test_one_seed_has_no_seed_runs(tmp_path):
  log = metrics_log.MetricsLog(str(tmp_path))
  log.write({"step": 1, "loss": 2.0, "accuracy": 0.5})
  log.write({"step": 1, "eval_loss": 3.0})
  log.close()
  assert _read(tensorboard.logdir(str(tmp_path))) == {
      "loss": [(1, 2.0)], "accuracy": [(1, 0.5)], "eval_loss": [(1, 3.0)]}
  assert os.listdir(tensorboard.logdir(str(tmp_path)))[0].startswith("events.out.tfevents.")
  assert len(os.listdir(tensorboard.logdir(str(tmp_path)))) == 1


def test_truncate_keeps_earlier_steps(tmp_path):
  log = metrics_log.MetricsLog(str(tmp_path))
  for step in (1, 2, 3):
    log.write({"step": step, "loss": float(step), "per_seed": {"loss": [step, -step]}})
  log.close()
  # Event files are named by their creation second first: a resumed session starts later.
  time.sleep(1.05)
  log = metrics_log.MetricsLog(str(tmp_path))
  log.truncate(2)
  log.write({"step": 3, "loss": 30.0, "per_seed": {"loss": [30, -30]}})
  log.close()
  root = tensorboard.logdir(str(tmp_path))
  assert _read(root) == {"loss": [(1, 1.0), (2, 2.0), (3, 30.0)]}
  assert _read(os.path.join(root, "seed_1")) == {"loss": [(1, -1.0), (2, -2.0), (3, -30.0)]}
  assert [r["loss"] for r in metrics_log.read(str(tmp_path))] == [1.0, 2.0, 30.0]


def test_disabled_writes_nothing(tmp_path):
  metrics_log.MetricsLog(str(tmp_path), tensorboard=False).write({"step": 1, "loss": 1.0})
  metrics_log.MetricsLog(str(tmp_path / "other"), enabled=False).write({"step": 1, "loss": 1.0})
  assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]
