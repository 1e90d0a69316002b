"""Gradient flow through time: shapes, exactness, padding, vanishing/exploding, plots, entry."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.analysis import gradient_flow
from rnnlab.studies import gradient_flow as gradient_flow_study
from rnnlab.studies import plots, sweep
from rnnlab.training import train
from tests.conftest import committed_results_status, run_entry, tiny_config


def _setup(task="adding", cell="vanilla", **model):
  config = tiny_config(task, cell)
  for k, v in model.items():
    config.model[k] = v
  trainer = train.Trainer(config)
  params = gradient_flow.seed_params(trainer.init())
  loss_fn = lambda outputs, batch: trainer.task.loss_and_metrics(outputs, batch)[0]
  return config, trainer, params, loss_fn


@pytest.mark.parametrize("cell", ["vanilla", "lstm", "gru"])
def test_norms_have_one_value_per_step(cell):
  config, trainer, params, _ = _setup("copy", cell)
  norms = gradient_flow.trainer_gradient_norms(trainer, params, num_examples=4)
  time = config.task.length + 20
  assert norms.shape == (1, time)
  assert np.all(np.isfinite(norms)) and np.all(norms > 0)


def test_gradients_are_exact_and_bidirectional_has_two():
  _, trainer, params, loss_fn = _setup("adding", "gru", bidirectional=True)
  batch = trainer.task.sample(jax.random.PRNGKey(3), 4)
  shape = gradient_flow.perturbation_shape(trainer.model, params, batch)
  assert shape == (4, 2, 10, 8)
  outputs = jax.jit(trainer.model.apply)({"params": params}, batch["inputs"], batch["lengths"])
  f = jax.jit(lambda d: gradient_flow.perturbed_loss(trainer.model, params, batch, loss_fn, d))
  assert float(f(jnp.zeros(shape))) == pytest.approx(float(loss_fn(outputs, batch)), rel=1e-6)
  grads = jax.jit(gradient_flow.hidden_state_gradients, static_argnums=(0, 3))(
      trainer.model, params, batch, loss_fn)
  assert grads.shape == shape
  # Directional derivative against a central finite difference.
  direction = jax.random.normal(jax.random.PRNGKey(4), shape)
  eps = 1e-2
  numeric = (float(f(eps * direction)) - float(f(-eps * direction))) / (2 * eps)
  assert float(jnp.sum(grads * direction)) == pytest.approx(numeric, rel=2e-2)


def test_padded_steps_get_exactly_zero_gradient():
  config = tiny_config("adding", "gru")
  config.task.min_length = 4
  trainer = train.Trainer(config)
  params = gradient_flow.seed_params(trainer.init())
  loss_fn = lambda outputs, batch: trainer.task.loss_and_metrics(outputs, batch)[0]
  batch = trainer.task.sample(jax.random.PRNGKey(0), 16)
  lengths = np.asarray(batch["lengths"])
  assert lengths.min() < config.task.length  # some padding to check
  grads = np.asarray(jax.jit(gradient_flow.hidden_state_gradients, static_argnums=(0, 3))(
      trainer.model, params, batch, loss_fn))
  for b, n in enumerate(lengths):
    assert np.all(grads[b, :, n:] == 0.0)
    assert np.all(np.linalg.norm(grads[b, 0, :n], axis=-1) > 0)


def test_vanilla_gradients_explode_or_vanish_back_through_time():
  config = tiny_config("adding", "vanilla")
  config.task.length = 30
  config.model.hidden_size = 32
  trainer = train.Trainer(config)
  params = gradient_flow.seed_params(trainer.init())

  def norms(scale):  # recurrent_scale multiplies the orthogonal W_h: scale the initial one
    scaled = jax.tree.map(lambda x: x, params)
    layer = scaled["encoder"]["layer0_fwd"]
    layer["w_h"] = scale * layer["w_h"]
    return gradient_flow.trainer_gradient_norms(trainer, scaled, num_examples=16)[0]

  exploding, vanishing = norms(2.5), norms(0.5)
  # Adding reads the last step only: every earlier step's gradient is pure BPTT.
  assert exploding[0] > 100 * exploding[-1]
  assert vanishing[0] < 1e-3 * vanishing[-1]
  assert np.all(np.isfinite(exploding))
  # The same through the config: recurrent_scale multiplies the same orthogonal initial W_h.
  config.model.recurrent_scale = 2.5
  np.testing.assert_allclose(gradient_flow.norms_at_init(config, num_examples=16), exploding,
                             rtol=1e-4)


def test_gradient_flow_of_a_trained_run(tmp_path):
  train.train_and_evaluate(tiny_config("adding", "vanilla", num_steps=10), str(tmp_path))
  data = gradient_flow_study.gradient_flow_of_workdir(str(tmp_path), num_examples=4)
  assert [(r["stage"], r["step"]) for r in data["runs"]] == [("init", 0), ("trained", 10)]
  assert all(len(r["norms"]) == 10 for r in data["runs"])
  with open(tmp_path / gradient_flow_study.DATA_FILE) as f:
    assert json.load(f) == data
  assert plots.gradient_flow(data, str(tmp_path / "flow.png"))
  assert os.path.getsize(tmp_path / "flow.png") > 1000


def test_exploding_plot_reads_saved_data(tmp_path):
  runs = []
  for label, norms in (("clip", [1.0, 0.5]), ("noclip", [1e3, float("nan")])):
    os.makedirs(tmp_path / label)
    with open(tmp_path / label / "metrics.jsonl", "w") as f:
      for step, g in zip((5, 10), norms):
        f.write(json.dumps({"step": step, "loss": g, "grad_norm": g}) + "\n")
    runs.append({"label": label, "workdir": str(tmp_path / label), "grad_clip": 1.0})
  data = {"task": "adding", "length": 3, "train_scale": 2.0, "baseline": 0.167,
          "norms": [{"scale": 1.0, "norms": [0.1, 0.2, 0.3]}, {"scale": 2.0,
                                                               "norms": [30.0, 3.0, 0.3]}],
          "runs": runs}
  assert plots.exploding(data, str(tmp_path / "x.png"))
  assert os.path.getsize(tmp_path / "x.png") > 1000
  assert not plots.exploding({"norms": []}, str(tmp_path / "y.png"))


def test_entry_point_on_a_run_writes_into_its_workdir(tmp_path):
  """`--workdir=RUN` without --results_dir leaves experiments/results alone: data and plot go to
  the run's workdir."""
  workdir = tmp_path / "run"
  train.train_and_evaluate(tiny_config("adding", "gru", num_steps=10), str(workdir))
  before = committed_results_status()
  result = run_entry("experiments.gradient_flow", f"--workdir={workdir}", "--num_examples=4")
  assert result.returncode == 0, result.stderr[-2000:]
  assert committed_results_status() == before
  plot = workdir / gradient_flow_study.PLOT_FILE
  assert json.loads(result.stdout.strip().splitlines()[-1]) == {"plot": str(plot)}
  assert os.path.getsize(plot) > 1000
  with open(workdir / gradient_flow_study.DATA_FILE) as f:
    data = json.load(f)
  assert [(r["stage"], r["step"]) for r in data["runs"]] == [("init", 0), ("trained", 10)]
  assert data["command"] == ("python -m experiments.gradient_flow "
                             f"--workdir={workdir} --num_examples=4")


def test_entry_point_needs_config_or_workdir():
  result = run_entry("experiments.gradient_flow")
  assert result.returncode == 1
  assert "exactly one of --config" in result.stderr and "Traceback" not in result.stderr


def test_study_runs_are_sweep_points_and_resume(tmp_path):
  """Each cell's short run is a sweep point in train_dir/<cell>: the study's numbers come from
  those workdirs, and running it again trains nothing (the points are finished)."""
  config = tiny_config("adding", "vanilla")
  data = gradient_flow_study.gradient_flow_study(config, ["vanilla", "gru"], str(tmp_path),
                                                 train_steps=10, num_examples=4)
  assert [(r["cell"], r["stage"], r["step"]) for r in data["runs"]] == [
      ("vanilla", "init", 0), ("vanilla", "trained", 10), ("gru", "init", 0),
      ("gru", "trained", 10)]
  for cell in ("vanilla", "gru"):
    assert sweep.status(sweep.Point(cell, (), str(tmp_path / cell), config)) != "new"
    with open(tmp_path / cell / "config.json") as f:
      saved = json.load(f)
    assert saved["model"]["cell"] == cell and saved["train"]["num_steps"] == 10
  rows = {cell: train.read_metrics(str(tmp_path / cell)) for cell in ("vanilla", "gru")}
  again = gradient_flow_study.gradient_flow_study(config, ["vanilla", "gru"], str(tmp_path),
                                                  train_steps=10, num_examples=4)
  assert {cell: train.read_metrics(str(tmp_path / cell)) for cell in rows} == rows
  assert [r["norms"] for r in again["runs"]] == [r["norms"] for r in data["runs"]]


@pytest.mark.slow
def test_exploding_study_trains_clip_and_noclip_points(tmp_path):
  config = tiny_config("adding", "vanilla", grad_clip=0.5)
  data = gradient_flow_study.exploding_study(config, [1.0, 2.0], train_scale=2.0, train_steps=10,
                                             train_dir=str(tmp_path), num_examples=4)
  assert [(r["label"], r["grad_clip"]) for r in data["runs"]] == [
      ("global-norm clip 0.5", 0.5), ("no clipping", 0.0)]
  for sub, clip in (("clip", 0.5), ("noclip", 0.0)):
    with open(tmp_path / sub / "config.json") as f:
      saved = json.load(f)
    assert saved["train"]["grad_clip"] == clip and saved["model"]["recurrent_scale"] == 2.0
    assert [r["step"] for r in train.read_metrics(str(tmp_path / sub)) if "loss" in r][-1] == 10
  assert [n["scale"] for n in data["norms"]] == [1.0, 2.0]
