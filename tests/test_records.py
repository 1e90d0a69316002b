"""Run records: a run's record resumes exactly elsewhere, and a study's records folder rebuilds
its report and continues the study on another machine."""

import json
import os
import shutil

import pytest

from configs import compare as compare_config
from rnnlab.studies import memory_study, records, sweep
from rnnlab.training import run_folder, train
from tests.conftest import committed_results_status, file_bytes, run_entry, tiny_config


def _drop_timing(rows):
  return [{k: v for k, v in r.items() if k not in ("steps_per_sec", "wall_time_sec", "time")}
          for r in rows]


def test_a_copied_record_resumes_where_the_run_stood(tmp_path):
  straight, first, copy = (str(tmp_path / n) for n in ("straight", "first", "copy"))
  config = tiny_config(num_steps=20, eval_every=5, checkpoint_every=10)
  train.train_and_evaluate(config, straight)
  config.train.num_steps = 10
  train.train_and_evaluate(config, first)
  with open(os.path.join(first, run_folder.METRICS_FILE), "a") as f:
    f.write('{"step": 11, "loss"')  # a row the run is writing as the copy is made
  run_folder.copy_record(first, copy, checkpoints=True)
  assert sorted(os.listdir(copy)) == ["best_checkpoint", "checkpoints", "config.json",
                                      "metrics.jsonl", "summary.json"]
  assert run_folder.checkpoint_steps(copy) == [10]
  assert run_folder.checkpoint_steps(copy, best=True) == run_folder.checkpoint_steps(first,
                                                                                     best=True)
  assert open(os.path.join(copy, run_folder.METRICS_FILE)).read().endswith("}\n")
  config.train.num_steps = 20
  train.train_and_evaluate(config, copy)
  assert _drop_timing(train.read_metrics(copy)) == _drop_timing(train.read_metrics(straight))
  assert (run_folder.checkpoint_steps(copy, best=True)
          == run_folder.checkpoint_steps(straight, best=True))


def test_a_record_without_checkpoints_holds_the_results_only(tmp_path):
  run, copy = str(tmp_path / "run"), str(tmp_path / "copy")
  train.train_and_evaluate(tiny_config(num_steps=10), run)
  run_folder.copy_record(run, copy, extra_files=("diverged.json",))
  assert sorted(os.listdir(copy)) == ["config.json", "metrics.jsonl", "summary.json"]
  for name in os.listdir(copy):
    assert open(os.path.join(copy, name)).read() == open(os.path.join(run, name)).read()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  base = tmp_path_factory.mktemp("records")
  config = compare_config.get_config("quick")
  config.compare.cells = "gru"
  config.compare.tasks = "copy"
  config.compare.copy_lengths = "5,6"
  config.train.keep_checkpoints = 2  # a point can be rewound to its step 10
  results = str(base / "results")
  memory_study.run(config, str(base / "runs"), results, "python -m experiments.compare TEST")
  return dict(base=base, config=config, results=results,
              records=os.path.join(results, "compare_runs"))


@pytest.mark.slow
def test_the_records_rebuild_the_same_report(study, tmp_path):
  names = sorted(os.listdir(study["records"]))
  assert names == ["sweep.json", "task=copy,T=5,cell=gru,bidir=false",
                   "task=copy,T=6,cell=gru,bidir=false"]
  for point in names[1:]:  # finished: no checkpoints, no TensorBoard events
    assert sorted(os.listdir(os.path.join(study["records"], point))) == [
        "config.json", "metrics.jsonl", "summary.json"]
  rebuilt = str(tmp_path / "rebuilt")
  before = file_bytes(study["records"])
  memory_study.run(study["config"], study["records"], rebuilt, "rebuild", from_workdirs=True)
  assert file_bytes(study["records"]) == before
  for name in ("compare.md", "compare.csv"):
    assert (open(os.path.join(rebuilt, name)).read()
            == open(os.path.join(study["results"], name)).read()), name
  md = open(os.path.join(rebuilt, "compare.md")).read()
  assert "Run records: `compare_runs/` beside this report" in md


@pytest.mark.slow
def test_the_records_continue_a_study_on_another_machine(study, tmp_path):
  """A point stopped part-way is copied with its checkpoint and resumes from it; a finished
  point is not trained again."""
  runs = study["base"] / "runs"
  stopped = runs / "task=copy,T=6,cell=gru,bidir=false"
  shutil.rmtree(stopped / "checkpoints" / "20")
  os.remove(stopped / "summary.json")  # as if killed after its checkpoint of step 10
  points = sweep.load_points(str(runs))
  records.write(str(runs), points, str(tmp_path / "records"))
  assert run_folder.checkpoint_steps(str(tmp_path / "records" / stopped.name)) == [10]
  workdir = str(tmp_path / "elsewhere")
  shutil.copytree(tmp_path / "records", workdir)
  finished = os.path.join(workdir, "task=copy,T=5,cell=gru,bidir=false")
  before = file_bytes(finished)
  kept = [r for r in train.read_metrics(os.path.join(workdir, stopped.name)) if r["step"] <= 10]
  memory_study.run(study["config"], workdir, str(tmp_path / "report"), "again")
  assert file_bytes(finished) == before
  rows = train.read_metrics(os.path.join(workdir, stopped.name))
  assert [r["step"] for r in rows if "loss" in r] == [5, 10, 15, 20]
  assert [r for r in rows if r["step"] <= 10] == kept  # resumed at 10, not trained again
  summary = json.load(open(os.path.join(workdir, stopped.name, "summary.json")))
  assert summary["steps"] == 20


def test_writing_records_into_the_study_itself_is_a_no_op(tmp_path):
  records.write(str(tmp_path), [], str(tmp_path))
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args,message", [
    (("--workdir=experiments/results/compare_runs",), "inside the committed results"),
    (("--workdir=experiments/results/compare_runs", "--from_workdirs"),
     "pass --results_dir=DIR elsewhere"),
    (("--workdir=./experiments/results/compare_runs/", "--from_workdirs",
      "--results_dir=experiments/results/compare_runs/x"), "inside the committed run records"),
    (("--workdir={tmp}/study", "--results_dir=experiments/results/compare_runs"),
     "inside the committed run records"),
])
def test_the_committed_records_are_read_never_written(args, message, tmp_path):
  before = committed_results_status()
  result = run_entry("experiments.compare", "--config=configs/compare.py:quick",
                     *(a.format(tmp=tmp_path) for a in args))
  assert result.returncode == 1, result.stderr
  assert message in result.stderr and "Traceback" not in result.stderr
  assert committed_results_status() == before
  assert not os.path.exists(tmp_path / "study")
