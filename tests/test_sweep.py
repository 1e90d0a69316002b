"""Sweeps: spec parsing (types, errors), points, sharding, skip-finished/resume, merge, entry."""

import json
import os

import pytest

from rnnlab.errors import ConfigError
from rnnlab.studies import launch, sweep, sweep_spec, sweep_table
from rnnlab.training import train
from tests.conftest import run_entry, tiny_config


def _config():
  return tiny_config("adding", "vanilla", num_steps=10, log_every=5, eval_every=5,
                     checkpoint_every=5)


# ----------------------------------------------------------------------------- parsing

def test_spec_values_take_the_type_of_the_key():
  axes = sweep_spec.parse_spec(
      "model.cell=vanilla,lstm; train.learning_rate=1e-3,3e-3;model.bidirectional=true,False;"
      "train.num_steps=100,1e3;task.solved_threshold=0.5;", _config())
  assert axes == [("model.cell", ["vanilla", "lstm"]), ("train.learning_rate", [0.001, 0.003]),
                  ("model.bidirectional", [True, False]), ("train.num_steps", [100, 1000]),
                  ("task.solved_threshold", [0.5])]
  assert type(axes[3][1][1]) is int and type(axes[1][1][0]) is float


@pytest.mark.parametrize("spec,message", [
    ("model.cell", "no '='"),
    ("model.cell=", "an empty value"),
    ("model.cell=lstm,,gru", "an empty value"),
    ("=lstm", "the key is empty"),
    ("", "empty sweep"),
    (" ; ", "empty sweep"),
    ("model.cel=lstm", "unknown config key 'model.cel'"),
    ("modle.cell=lstm", "unknown config key 'modle.cell'"),
    ("model=lstm", "'model' is a section"),
    ("train.num_steps=ten", "bad value 'ten' for 'train.num_steps'"),
    ("train.num_steps=1.5", "expected an int"),
    ("train.learning_rate=fast", "expected a float"),
    ("model.bidirectional=maybe", "expected a bool"),
    ("model.cell=lstm;model.cell=gru", "appears twice"),
    ("model.cell=lstm,lstm", "repeat"),
])
def test_spec_errors_name_the_problem(spec, message):
  with pytest.raises(ConfigError, match=message):
    sweep_spec.parse_spec(spec, _config())


def test_bad_value_is_caught_before_training(tmp_path):
  overrides = sweep_spec.product(sweep_spec.parse_spec("model.cell=lstm,transformer", _config()))
  with pytest.raises(ConfigError, match="sweep point 'cell=transformer'.*not allowed"):
    launch.run_sweep(_config(), overrides, str(tmp_path))
  assert not os.path.exists(tmp_path / "cell=lstm")


def test_product_order_and_point_names(tmp_path):
  config = _config()
  overrides = sweep_spec.product(sweep_spec.parse_spec(
      "model.cell=vanilla,lstm,gru;train.learning_rate=1e-3,3e-3", config))
  points = sweep.make_points(config, overrides, str(tmp_path))
  assert [p.name for p in points] == [
      "cell=vanilla,lr=0.001", "cell=vanilla,lr=0.003", "cell=lstm,lr=0.001",
      "cell=lstm,lr=0.003", "cell=gru,lr=0.001", "cell=gru,lr=0.003"]
  assert points[3].workdir == str(tmp_path / "cell=lstm,lr=0.003")
  assert points[3].config.model.cell == "lstm"
  assert points[3].config.train.learning_rate == 0.003
  assert config.model.cell == "vanilla"  # the base config is not changed
  # Two keys with the same last component keep their full names.
  names = [sweep.point_name(o) for o in sweep_spec.product(
      [("model.dropout_rate", [0.1]), ("train.weight_decay", [0.0]), ("model.weight_decay", [1]),
       ("model.bidirectional", [True])])]
  assert names == ["dropout=0.1,train.weight_decay=0.0,model.weight_decay=1,bidir=true"]


def test_get_sweep_forms():
  config = _config()
  assert sweep_spec.from_sweep_object({"model.cell": ["lstm", "gru"], "train.batch_size": [8]},
                                 config) == [(("model.cell", "lstm"), ("train.batch_size", 8)),
                                             (("model.cell", "gru"), ("train.batch_size", 8))]
  assert sweep_spec.from_sweep_object([{"model.cell": "lstm"}, {"train.learning_rate": 1}],
                                 config) == [(("model.cell", "lstm"),),
                                             (("train.learning_rate", 1.0),)]
  with pytest.raises(ConfigError, match="must return"):
    sweep_spec.from_sweep_object("model.cell=lstm", config)
  with pytest.raises(ConfigError, match="unknown config key"):
    sweep_spec.from_sweep_object({"model.size": [1]}, config)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 5, 7])
def test_shards_are_disjoint_and_cover_every_point(tmp_path, num_shards):
  config = _config()
  overrides = sweep_spec.product(sweep_spec.parse_spec(
      "model.cell=vanilla,lstm,gru;train.learning_rate=1e-3,3e-3", config))
  points = sweep.make_points(config, overrides, str(tmp_path))
  shards = [sweep.shard(points, num_shards, i) for i in range(num_shards)]
  names = [p.name for s in shards for p in s]
  assert sorted(names) == sorted(p.name for p in points)
  assert len(names) == len(set(names)) == 6


@pytest.mark.parametrize("num_shards,index", [(0, 0), (2, 2), (2, -1)])
def test_bad_shard_flags(num_shards, index):
  with pytest.raises(ConfigError, match="shard"):
    sweep.shard([], num_shards, index)


@pytest.mark.parametrize("flags, match", [({"num_shards": 2, "shard_index": 2}, "shard_index"),
                                          ({"parallel": 0}, "parallel")])
def test_bad_run_flags_leave_no_sweep_behind(tmp_path, flags, match):
  base = tmp_path / "sweep"
  overrides = sweep_spec.product(sweep_spec.parse_spec("model.cell=vanilla,gru", tiny_config()))
  with pytest.raises(ConfigError, match=match):
    launch.run_sweep(tiny_config(), overrides, str(base), launch.Training(**flags))
  assert not base.exists()


# ----------------------------------------------------------------------------- running

_SHARD_1_OF_2 = launch.Training(num_shards=2, shard_index=1)


@pytest.fixture(scope="module")
def sharded_sweep(tmp_path_factory):
  """A 2-point sweep of which shard 1 of 2 (point 1) ran to its 10-step budget, after being
  interrupted at step 5; point 0 (shard 0) never ran."""
  base = str(tmp_path_factory.mktemp("sweep"))
  config = _config()
  overrides = sweep_spec.product(sweep_spec.parse_spec("train.learning_rate=1e-3,3e-3", config))
  points = sweep.make_points(config, overrides, base)
  # An interrupted run: 5 of 10 steps done, checkpoint at 5, no summary of a finished run.
  short = points[1].config.copy_and_resolve_references()
  short.train.num_steps = 5
  train.train_and_evaluate(short, points[1].workdir)
  assert sweep.status(points[1]) == "partial" and sweep.status(points[0]) == "new"
  before = train.read_metrics(points[1].workdir)
  ran = []
  rows = launch.run_sweep(config, overrides, base, _SHARD_1_OF_2,
                          run=lambda p: ran.append((p.name, sweep.status(p))) or sweep.run_point(p)
                          ).rows
  return dict(base=base, config=config, overrides=overrides, points=points, rows=rows, ran=ran,
              before=before)


def test_sweep_runs_its_shard_resumes_and_writes_the_table(sharded_sweep):
  s = sharded_sweep
  assert s["ran"] == [("lr=0.003", "partial")]
  assert [(r["status"], r["steps"]) for r in s["rows"]] == [("not run", 0), ("finished", 10)]
  # The interrupted point resumed from step 5: its first rows are the ones logged before.
  after = train.read_metrics(s["points"][1].workdir)
  assert after[:len(s["before"])] == s["before"]
  assert [r["step"] for r in after if "loss" in r] == [5, 10]
  md = open(os.path.join(s["base"], "sweep.md")).read()
  assert "| lr=0.003 | 0.003 | finished | 10 | mse |" in md
  assert "| lr=0.001 | 0.001 | not run | 0 |" in md
  with open(os.path.join(s["base"], "sweep.json")) as f:
    assert json.load(f)["axes"] == ["train.learning_rate"]


def test_rerun_skips_finished_points(sharded_sweep):
  s = sharded_sweep
  ran = []
  launch.run_sweep(s["config"], s["overrides"], s["base"], _SHARD_1_OF_2,
                   run=lambda p: ran.append(sweep.run_point(p)))
  assert ran == [None]


def test_merge_rebuilds_the_same_table(sharded_sweep):
  base = sharded_sweep["base"]
  md, csv = (open(os.path.join(base, f)).read() for f in ("sweep.md", "sweep.csv"))
  for f in ("sweep.md", "sweep.csv"):
    os.remove(os.path.join(base, f))
  sweep.merge(base)
  assert open(os.path.join(base, "sweep.md")).read() == md
  assert open(os.path.join(base, "sweep.csv")).read() == csv
  assert len(csv.strip().splitlines()) == 3


def test_merge_entry_point(sharded_sweep):
  base = sharded_sweep["base"]
  csv = open(os.path.join(base, "sweep.csv")).read()
  result = run_entry("experiments.sweep", "--merge", f"--workdir={base}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert open(os.path.join(base, "sweep.csv")).read() == csv


@pytest.mark.parametrize("spec,message", [
    ("model.cell=lstm;;train.learning_rate", "no '='"),
    ("model.celll=lstm", "unknown config key 'model.celll'"),
    ("train.batch_size=eight", "bad value 'eight'"),
])
def test_entry_point_bad_sweep_is_one_clear_error(tmp_path, spec, message):
  result = run_entry("experiments.sweep", "--config=configs/adding.py", f"--sweep={spec}",
                     f"--workdir={tmp_path}/s")
  assert result.returncode == 1
  assert message in result.stderr and "error:" in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "s")


def test_merge_of_a_directory_without_sweep(tmp_path):
  result = run_entry("experiments.sweep", "--merge", f"--workdir={tmp_path}")
  assert result.returncode == 1 and "holds no sweep" in result.stderr
  assert "Traceback" not in result.stderr


def test_entry_point_get_sweep_bad_value_before_training(tmp_path):
  path = tmp_path / "with_sweep.py"
  path.write_text("from configs import adding\n\n\ndef get_config():\n  return adding.get_config()"
                  "\n\n\ndef get_sweep():\n  return {'model.cell': ['lstm', 'nope']}\n")
  result = run_entry("experiments.sweep", f"--config={path}", f"--workdir={tmp_path}/s")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "sweep point 'cell=nope'" in result.stderr
  assert not os.path.exists(tmp_path / "s")


@pytest.mark.slow
def test_a_diverged_point_is_recorded_and_the_sweep_goes_on(tmp_path):
  """A point whose loss becomes NaN/inf is a result: recorded in diverged.json, reported with
  its step, skipped on a rerun, and the other points still train."""
  config = _config()
  config.model.cell = "irnn"  # relu with identity recurrence: a huge step makes it overflow
  config.train.grad_clip = 0.0
  overrides = sweep_spec.product(sweep_spec.parse_spec("train.learning_rate=1e9,1e-3", config))
  rows = launch.run_sweep(config, overrides, str(tmp_path)).rows
  by_lr = {r["train.learning_rate"]: r for r in rows}
  bad, good = by_lr[1e9], by_lr[1e-3]
  assert bad["status"] == "diverged" and bad["diverged_at"] >= 0
  assert sweep_table.steps_to_solve_text(bad) == f"diverged at step {bad['diverged_at']}"
  with open(os.path.join(str(tmp_path), bad["name"], sweep.DIVERGED_FILE)) as f:
    assert "non-finite" in json.load(f)["message"]
  assert good["status"] == "finished" and good["steps"] == 10
  ran = []
  launch.run_sweep(config, overrides, str(tmp_path), run=lambda p: ran.append(sweep.status(p)))
  assert ran == ["diverged", "finished"]
  assert "diverged at step" in open(tmp_path / "sweep.md").read()


def test_concurrent_writers_of_one_file_do_not_collide(tmp_path):
  """Shards running at once rewrite sweep.json; each writes through its own temporary file."""
  import subprocess
  import sys

  from tests.conftest import ROOT
  path = str(tmp_path / "sweep.json")
  script = ("import sys; from rnnlab.training.run_folder import atomic_write\n"
            "for _ in range(200): atomic_write(sys.argv[1], sys.argv[2] * 1000)")
  procs = [subprocess.Popen([sys.executable, "-c", script, path, f"{i}\n"], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT)) for i in range(3)]
  assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
  lines = set(open(path).read().split())
  assert len(lines) == 1 and not [f for f in os.listdir(tmp_path) if ".tmp" in f]
