"""Training loop: workdir files, resume equality, reload, bad config, non-finite loss, seeds."""

import json
import os
import re

import jax
import ml_collections
import numpy as np
import pytest

from rnnlab.errors import CheckpointError, ConfigError, NonFiniteError, RnnlabError
from rnnlab.training import checkpoint, config_check, defaults, evaluation, train
from tests.conftest import run_entry, tiny_config


def _rows(workdir):
  return train.read_metrics(str(workdir))


def _drop_timing(row):
  return {k: v for k, v in row.items() if k != "steps_per_sec"}


def test_run_writes_workdir(tmp_path):
  summary = train.train_and_evaluate(tiny_config(), str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == [".lock", "best_checkpoint", "checkpoints",
                                         "config.json", "metrics.jsonl", "summary.json",
                                         "tensorboard"]
  rows = _rows(tmp_path)
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == [5, 10, 15, 20]
  for key in ("loss", "accuracy", "grad_norm", "steps_per_sec", "learning_rate"):
    assert all(np.isfinite(r[key]) for r in train_rows), key
  assert [r["step"] for r in rows if "eval_loss" in r] == [10, 20]
  assert summary["steps"] == 20 and summary["task"] == "copy"
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() == 20
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["model"]["hidden_size"] == 8


def test_resume_equals_uninterrupted(tmp_path):
  kw = dict(num_steps=120, log_every=20, eval_every=60, checkpoint_every=60)
  straight = tiny_config(**kw)
  train.train_and_evaluate(straight, str(tmp_path / "a"))
  first = tiny_config(**dict(kw, num_steps=60))
  train.train_and_evaluate(first, str(tmp_path / "b"))
  # A stale line from a run killed after its last checkpoint must be dropped on resume.
  with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": 80, "loss": 123.0}) + "\n")
  train.train_and_evaluate(straight, str(tmp_path / "b"))
  a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
  assert [_drop_timing(r) for r in a] == [_drop_timing(r) for r in b]
  at_120 = [r for r in b if r["step"] == 120]
  assert at_120 and all(r.get("loss") != 123.0 for r in b)


def test_evaluate_reloads_the_final_state(tmp_path):
  summary = train.train_and_evaluate(tiny_config("adding", "gru"), str(tmp_path))
  result = evaluation.evaluate_workdir(str(tmp_path))
  assert result["step"] == 20
  assert result["mse"] == pytest.approx(summary["final"]["eval_mse"], rel=1e-6)
  best = evaluation.evaluate_workdir(str(tmp_path), best=True)
  assert best["mse"] <= result["mse"] + 1e-9


def test_evaluate_errors(tmp_path):
  with pytest.raises(RnnlabError, match="does not exist"):
    evaluation.evaluate_workdir(str(tmp_path / "missing"))
  os.makedirs(tmp_path / "empty")
  with pytest.raises(RnnlabError, match="holds no rnnlab run"):
    evaluation.evaluate_workdir(str(tmp_path / "empty"))
  train.train_and_evaluate(tiny_config(num_steps=10), str(tmp_path / "run"))
  # Pretend the run was made with another model size: restoring must fail clearly.
  path = tmp_path / "run" / "config.json"
  saved = json.loads(path.read_text())
  saved["model"]["hidden_size"] = 16
  path.write_text(json.dumps(saved))
  with pytest.raises(CheckpointError, match="does not match the model"):
    evaluation.evaluate_workdir(str(tmp_path / "run"))


@pytest.mark.parametrize("key,value,message", [
    ("model.cell", "transformer", "config.model.cell='transformer' is not allowed"),
    ("model.hidden_size", 0, "config.model.hidden_size must be a positive integer"),
    ("task.length", 0, "config.task.length must be a positive integer"),
    ("task.name", "sorting", "config.task.name='sorting'"),
    ("train.batch_size", -4, "config.train.batch_size must be a positive integer"),
    ("train.optimizer", "rmsprop", "choose one of: adam, adamw, sgd"),
    ("train.learning_rate", 0.0, "learning_rate must be > 0"),
    ("model.activation", "sigmoid", "choose one of: tanh, relu"),
    ("task.min_length", 9, "min_length must be <= length"),
])
def test_bad_config_rejected_before_compilation(key, value, message):
  config = tiny_config()
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=message):
    config_check.validate(config)


def _float_keys() -> list[str]:
  """Every float key of the defaults (task.solved_threshold is a float placeholder, None)."""
  config = defaults.get_config()
  return [f"{section}.{key}" for section, values in config.items()
          if isinstance(values, ml_collections.ConfigDict) for key in values
          if values.get_type(key) is float]


@pytest.mark.parametrize("key", _float_keys())
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_every_float_key_must_be_finite(key, value):
  config = tiny_config()
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=rf"config\.{key} must be a finite number, got"):
    config_check.validate(config)


def test_float_keys_out_of_range(tmp_path):
  assert "train.grad_clip" in _float_keys() and "task.solved_threshold" in _float_keys()
  for key, value, message in (("model.r_min", 0.9995, "r_min=0.9995 exceeds"),
                              ("model.r_max", 1.0, "r_max must be in [0, 1)"),
                              ("model.chrono_t_max", 1.5, "chrono_t_max must be > 2"),
                              ("model.recurrent_scale", 0.0, "recurrent_scale must be > 0"),
                              ("train.grad_clip", -1.0, "grad_clip must be a number >= 0")):
    config = tiny_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
      train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")  # refused before anything is written


def test_workdir_with_another_config_is_refused(tmp_path):
  train.train_and_evaluate(tiny_config(num_steps=5), str(tmp_path))
  other = tiny_config(num_steps=5)
  other.model.cell = "gru"
  with pytest.raises(ConfigError, match="config.model.cell: saved 'lstm', now 'gru'"):
    train.train_and_evaluate(other, str(tmp_path))


def test_nonfinite_loss_stops_and_never_saves_it(tmp_path):
  config = tiny_config("adding", "irnn", num_steps=40, learning_rate=1e9, grad_clip=0.0,
                       checkpoint_every=1, log_every=1)
  with pytest.raises(NonFiniteError, match=r"non-finite \(NaN/inf\) at step \d+"):
    train.train_and_evaluate(config, str(tmp_path))
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  trainer = train.Trainer(config)
  step = ckpt.latest_step()
  if step is not None:  # whatever was saved is finite
    state = ckpt.restore(trainer.abstract_state())
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
  ckpt.close()


def test_nonfinite_skip_mode_keeps_training(tmp_path):
  config = tiny_config("adding", "irnn", num_steps=10, learning_rate=1e9, grad_clip=0.0,
                       on_nonfinite="skip")
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["skipped_updates"] > 0 and summary["steps"] == 10


def test_stop_when_solved_records_steps_to_solve(tmp_path):
  config = tiny_config("adding", num_steps=100)
  config.task.solved_threshold = 100.0  # any MSE counts as solved
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["solved"] and summary["steps_to_solve"] == 10 and summary["steps"] == 10


@pytest.mark.slow
def test_seeds_in_one_program(tmp_path):
  one = train.train_and_evaluate(tiny_config(num_steps=10), str(tmp_path / "one"))
  two = train.train_and_evaluate(tiny_config(num_steps=10, num_seeds=2), str(tmp_path / "two"))
  rows = [r for r in _rows(tmp_path / "two") if "per_seed" in r]
  losses = rows[-1]["per_seed"]["loss"]
  assert len(losses) == 2 and losses[0] != losses[1]
  # Replica 0 is the same run whatever the number of replicas.
  one_rows = [r for r in _rows(tmp_path / "one") if "loss" in r]
  assert losses[0] == pytest.approx(one_rows[-1]["loss"], rel=1e-5)
  assert two["final"]["eval_per_seed"]["accuracy"][0] == pytest.approx(
      one["final"]["eval_accuracy"], rel=1e-5)


# ----------------------------------------------------------------------------- entry points

_TINY_FLAGS = ["--config=configs/copy.py", "--config.model.hidden_size=8",
               "--config.train.batch_size=8", "--config.train.num_steps=6",
               "--config.train.log_every=3", "--config.train.eval_every=3",
               "--config.train.eval_batches=1", "--config.train.eval_batch_size=8",
               "--config.task.length=4"]


def test_entry_points_train_then_evaluate(tmp_path):
  workdir = str(tmp_path / "run")
  result = run_entry("experiments.train", *_TINY_FLAGS, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "step 6" in result.stderr
  result = run_entry("experiments.evaluate", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads(result.stdout.strip().splitlines()[-1])
  assert metrics["step"] == 6 and 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize("flag,message", [
    ("--config.model.cell=transformer", "config.model.cell='transformer' is not allowed"),
    ("--config.model.no_such_key=1", "no_such_key"),
    ("--config.train.num_steps=abc", "num_steps"),
    ("--config.model.hidden_size=-3", "config.model.hidden_size must be a positive integer"),
])
def test_entry_point_bad_input_is_one_clear_message(tmp_path, flag, message):
  result = run_entry("experiments.train", *_TINY_FLAGS, flag, f"--workdir={tmp_path}/w")
  assert result.returncode != 0
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_evaluate_entry_point_on_empty_workdir(tmp_path):
  result = run_entry("experiments.evaluate", f"--workdir={tmp_path}")
  assert result.returncode == 1
  assert "holds no rnnlab run" in result.stderr and "Traceback" not in result.stderr


def test_a_run_saved_before_a_key_existed_still_resumes(tmp_path):
  """config.json written before model.residual/model.norm existed matches a config that leaves
  them at their defaults, and not one that changes them."""
  config = tiny_config("adding", "gru")
  workdir = str(tmp_path / "run")
  train.prepare_workdir(config, workdir)
  path = os.path.join(workdir, "config.json")
  with open(path) as f:
    saved = json.load(f)
  del saved["model"]["residual"], saved["model"]["norm"]
  with open(path, "w") as f:
    json.dump(saved, f)
  train.prepare_workdir(config, workdir, write=False)
  config.model.residual = True
  with pytest.raises(ConfigError, match="config.model.residual: saved False, now True"):
    train.prepare_workdir(config, workdir, write=False)
