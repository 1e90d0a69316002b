"""The comparison study: grid, end-to-end quick run and report, rebuild from workdirs, verdicts."""

import os

import pytest

from configs import compare as compare_config
from rnnlab.errors import ConfigError
from rnnlab.studies import (
  horizon,
  memory_grid,
  memory_report,
  memory_study,
  report,
  sweep_table,
  verdicts,
)
from rnnlab.training import train
from tests.conftest import run_entry


def test_default_grid_has_every_combination():
  config = compare_config.get_config()
  overrides = memory_grid.grid_overrides(config)
  assert len(overrides) == 3 * 2 * (4 + 4)
  as_dicts = [dict(o) for o in overrides]
  assert {d["task.length"] for d in as_dicts if d["task.name"] == "copy"} == {10, 20, 50, 100}
  assert {d["task.length"] for d in as_dicts if d["task.name"] == "adding"} == {50, 100, 200, 400}
  assert {(d["model.cell"], d["model.bidirectional"]) for d in as_dicts} == {
      (c, b) for c in ("vanilla", "lstm", "gru") for b in (False, True)}
  point = memory_grid.point_config(config)
  assert "compare" not in point and point.train.num_seeds == 3
  assert "compare" in config  # the study's config keeps its grid


@pytest.mark.parametrize("key,value,message", [
    ("directions", "uni,sideways", "'sideways' is not one of: uni, bi"),
    ("cells", "lstm,transformer", "not allowed"),
    ("copy_lengths", "10,ten", "'ten' is not an integer"),
    ("tasks", "copy,sorting", "compare.sorting_lengths is missing"),
    ("cells", " , ", "is empty"),
])
def test_bad_grid_is_rejected_before_training(tmp_path, key, value, message):
  config = compare_config.get_config("quick")
  config.compare[key] = value
  with pytest.raises(ConfigError, match=message):
    memory_grid.make_points(config, str(tmp_path))


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
  base = tmp_path_factory.mktemp("compare")
  config = compare_config.get_config("quick")
  config.compare.cells = "gru"  # 2 points: one per task, a few seconds each
  results = str(base / "results")
  rows = memory_study.run(config, str(base / "runs"), results, "python -m experiments.compare TEST",
                     default_grid=compare_config.get_config().compare.to_dict())
  return dict(base=base, config=config, results=results, rows=rows)


@pytest.mark.slow
def test_quick_study_end_to_end(quick_study):
  rows, results = quick_study["rows"], quick_study["results"]
  assert [(r["task"], r["length"], r["cell"], r["direction"], r["status"]) for r in rows] == [
      ("copy", 5, "gru", "uni", "finished"), ("adding", 10, "gru", "uni", "finished")]
  for r in rows:
    assert r["steps"] == 20 and r["num_seeds"] == 2 and len(r["metric_per_seed"]) == 2
    assert r["wall_time_sec"] > 0
  assert rows[0]["baseline"] == pytest.approx(10 * 2.0794415 / 25, rel=1e-5)
  assert rows[1]["baseline"] == pytest.approx(1 / 6)
  assert sorted(os.listdir(results)) == ["compare.csv", "compare.md", "compare_adding_curves.png",
                                         "compare_copy_curves.png", "compare_horizon.png",
                                         "compare_horizon_bars.png", "compare_runs"]
  md = open(os.path.join(results, "compare.md")).read()
  for text in ("python -m experiments.compare TEST", "CPU cores", "at most 20 steps",
               "2 seeds per point trained as one program", "declared subset",
               "## copy", "## adding", "## Measured vs the literature", "not solved"):
    assert text in md, text
  csv_rows = report.read_csv(os.path.join(results, "compare.csv"))
  assert [(r["task"], r["metric"]) for r in csv_rows] == [("copy", "accuracy"), ("adding", "mse")]
  assert float(csv_rows[1]["metric_mean"]) == pytest.approx(rows[1]["metric_mean"])


@pytest.mark.slow
def test_rebuild_from_workdirs_gives_the_same_files(quick_study):
  results = quick_study["results"]
  before = {name: open(os.path.join(results, name)).read() for name in ("compare.csv", "compare.md")}
  for name in before:
    os.remove(os.path.join(results, name))
  rows = memory_study.run(quick_study["config"], str(quick_study["base"] / "runs"), results,
                          "rebuild", from_workdirs=True)
  assert len(rows) == 2
  for name, text in before.items():
    assert open(os.path.join(results, name)).read() == text, name


@pytest.mark.slow
def test_finished_points_are_skipped(quick_study):
  runs = quick_study["base"] / "runs"
  summaries = sorted(str(p) for p in runs.glob("*/summary.json"))
  stamps = [os.path.getmtime(p) for p in summaries]
  memory_study.run(quick_study["config"], str(runs), quick_study["results"], "again")
  assert [os.path.getmtime(p) for p in summaries] == stamps


def _row(task, length, cell, direction, metric_mean, loss=None, baseline=None, solved=0, seeds=3):
  metric = "accuracy" if task == "copy" else "mse"
  return dict(task=task, length=length, cell=cell, direction=direction, metric=metric,
              metric_mean=metric_mean, loss_mean=loss if loss is not None else metric_mean,
              baseline=baseline if baseline is not None else (1 / 6 if task == "adding" else
                                                               10 * 2.0794 / (length + 20)),
              baseline_of="loss" if task == "copy" else "mse", solved_seeds=solved,
              num_seeds=seeds, steps_to_solve_mean=500.0 if solved else None, status="finished")


def test_literature_verdicts():
  rows = [_row("copy", 100, "vanilla", "uni", 0.12, loss=0.17, baseline=0.173),
          _row("copy", 10, "lstm", "uni", 1.0, solved=3), _row("copy", 50, "lstm", "uni", 0.4),
          _row("adding", 50, "lstm", "uni", 0.002, solved=3),
          _row("adding", 400, "vanilla", "uni", 0.16)]
  text = "\n".join(verdicts.literature_verdicts(rows))
  assert "stalls at the copy baseline" in text and "**agrees**" in text
  assert "LSTM and GRU solve short/medium copy delays" in text and "**partly agrees**" in text
  assert "MSE < 0.01 for moderate T" in text
  assert verdicts.literature_verdicts([]) == ["No finished points yet: nothing to compare."]


def test_entry_point_bad_grid_is_one_line(tmp_path):
  result = run_entry("experiments.compare", "--config=configs/compare.py:quick",
                     "--config.compare.directions=sideways", f"--workdir={tmp_path}/c")
  assert result.returncode == 1
  assert "error: config.compare.directions: 'sideways'" in result.stderr
  assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "c")


# ----------------------------------------------------------------------------- long-delay study

def test_cell_variants_and_per_variant_overrides_in_the_grid():
  from configs import horizon as horizon_config
  config = horizon_config.get_config()
  overrides = [dict(ov) for ov in memory_grid.grid_overrides(config)]
  assert len(overrides) == 6 * (3 + 3)
  chrono = [o for o in overrides if o.get("model.init") == "chrono"]
  assert {o["model.cell"] for o in chrono} == {"lstm", "gru"}
  # T_max is the point's sequence length: copy T + 20, adding T.
  assert {(o["task.name"], o["task.length"], o["model.chrono_t_max"]) for o in chrono
          if o["model.cell"] == "lstm"} == {
              ("copy", 100, 120.0), ("copy", 200, 220.0), ("copy", 500, 520.0),
              ("adding", 200, 200.0), ("adding", 400, 400.0), ("adding", 750, 750.0)}
  assert all(o["task.solved_threshold"] == 1.0 for o in overrides if o["task.name"] == "copy")
  assert all("task.solved_threshold" not in o for o in overrides if o["task.name"] == "adding")
  # Per-variant settings: the task's budget for every point, IRNN's own optimiser.
  assert {o["train.num_steps"] for o in overrides if o["task.name"] == "copy"} == {10000}
  assert {o["train.num_steps"] for o in overrides if o["task.name"] == "adding"} == {8000}
  irnn = [o for o in overrides if o["model.cell"] == "irnn"]
  assert irnn and all(o["train.optimizer"] == "sgd" and o["train.learning_rate"] == 1e-4
                      for o in irnn)
  assert all("train.optimizer" not in o for o in overrides if o["model.cell"] != "irnn")
  assert memory_grid.cell_label(chrono[0]) == "lstm:chrono"
  assert memory_grid.cell_label({"model.cell": "gru"}) == "gru"
  assert memory_grid.report_name(config) == "horizon"
  # Point names come from the grid axes alone: a budget is not part of a workdir's path.
  names = memory_grid.point_names(memory_grid.grid_overrides(config))
  assert names[0] == "task=copy,T=100,cell=irnn,bidir=false,solved_threshold=1.0"
  assert not any("steps" in n or "optimizer" in n for n in names)
  # The comparison study's points keep their names (no init keys without a variant).
  assert all("model.init" not in dict(ov)
             for ov in memory_grid.grid_overrides(compare_config.get_config()))


def test_bad_variant_override_is_a_config_error(tmp_path):
  config = compare_config.get_config("quick")
  config.compare.overrides.gru = "train.learning_rate=1e-3,3e-3"
  with pytest.raises(ConfigError, match="one value per key"):
    memory_grid.make_points(config, str(tmp_path))
  config.compare.overrides.gru = "train.learning_rat=1e-3"
  with pytest.raises(ConfigError, match="unknown config key 'train.learning_rat'"):
    memory_grid.make_points(config, str(tmp_path))


def test_bad_cell_variant_is_a_config_error(tmp_path):
  config = compare_config.get_config("quick")
  config.compare.cells = "lstm:warm"
  with pytest.raises(ConfigError, match="'lstm:warm' has init 'warm'"):
    memory_grid.make_points(config, str(tmp_path))


@pytest.mark.slow
def test_horizon_study_writes_its_own_report(tmp_path):
  """A tiny study named "horizon": horizon.* files, a chrono point that trained with its T_max,
  the copy threshold applied, and the long-delay verdicts."""
  config = compare_config.get_config("quick")
  config.compare.name = "horizon"
  config.compare.title = "Long-delay study TEST"
  config.compare.cells = "gru:chrono"
  config.compare.tasks = "copy"
  config.compare.copy_solved_threshold = 1.0
  results = str(tmp_path / "results")
  rows = memory_study.run(config, str(tmp_path / "runs"), results, "TEST")
  assert sorted(os.listdir(results)) == ["horizon.csv", "horizon.md", "horizon_copy_curves.png",
                                         "horizon_horizon.png", "horizon_horizon_bars.png",
                                         "horizon_runs"]
  assert [(r["cell"], r["length"], r["status"]) for r in rows] == [("gru:chrono", 5, "finished")]
  saved = train.load_config(rows[0]["workdir"])
  assert saved.model.init == "chrono" and saved.model.chrono_t_max == 25.0
  assert saved.task.solved_threshold == 1.0
  md = open(os.path.join(results, "horizon.md")).read()
  assert md.startswith("# Long-delay study TEST") and "copy T=5: solved by" in md


def test_horizon_verdicts_and_literature_column():
  rows = [_row("copy", 1000, "lstm", "uni", 0.125, loss=0.0204, baseline=0.0204),
          _row("copy", 1000, "lstm:chrono", "uni", 0.6, loss=0.011, baseline=0.0204),
          _row("adding", 600, "gru", "uni", 0.004, solved=3),
          dict(task="adding", length=600, cell="irnn", direction="uni", status="diverged",
               diverged_at=122, steps=122)]
  text = "\n".join(verdicts.horizon_verdicts(rows))
  assert "copy T=1000: solved by none; clearly below the chance baseline but not solved: " \
         "lstm:chrono; at the baseline: lstm." in text
  assert "Literature lstm on copy T=1000: loss 0.0204" in text
  assert "**at the chance baseline**" in text and "**beats the chance baseline**" in text
  assert ("chrono has the lower final loss in 1 of 1 pairs; in the 1 pairs where either run "
          "left the chance baseline, in 1.") in text
  assert "irnn adding T=600 at step 122" in text
  md = "\n".join(memory_report._task_section("adding", rows[2:]))
  assert "literature (same task)" in md and "MSE 5.3e-5 (Bai et al. 2018)" in md
  assert "| diverged |" in md and "diverged at step 122" in md


# ----------------------------------------------------------------------------- memory horizon

def _horizon_row(task, length, cell, solved, seeds=3, steps_to_solve=(), steps=1000, wall=100.0,
                 status="finished", direction="uni", rate=None):
  return dict(task=task, length=length, cell=cell, direction=direction, status=status,
              solved_seeds=solved, num_seeds=seeds, steps=steps, wall_time_sec=wall,
              steps_to_solve=list(steps_to_solve) + [-1] * (seeds - len(steps_to_solve)),
              steps_to_solve_mean=(sum(steps_to_solve) / len(steps_to_solve)
                                   if steps_to_solve else None),
              steps_per_sec=rate)


def test_memory_horizon_is_the_longest_length_two_of_three_seeds_solve():
  rows = [_horizon_row("copy", 10, "lstm", 3, steps_to_solve=[500, 750, 1000], steps=1000),
          _horizon_row("copy", 20, "lstm", 2, steps_to_solve=[1500, 2500], steps=4000, wall=400,
                       rate=20.0),
          _horizon_row("copy", 50, "lstm", 1, steps_to_solve=[3000], steps=4000),  # 1 of 3: no
          _horizon_row("copy", 10, "vanilla", 0),
          _horizon_row("copy", 100, "gru", 0, status="partial"),
          _horizon_row("copy", 10, "gru", 3, steps_to_solve=[250, 250, 500], steps=500, wall=50)]
  got = {h["cell"]: h for h in horizon.memory_horizons(rows)}
  assert got["lstm"]["horizon"] == 20
  assert (got["lstm"]["steps_median"], got["lstm"]["steps_min"], got["lstm"]["steps_max"]) == (
      2000.0, 1500, 2500)
  assert got["lstm"]["wall_to_solve_sec"] == pytest.approx(400 * 2000 / 4000)
  assert got["lstm"]["time_to_solve_sec"] == pytest.approx(2000 / 20.0)
  assert got["gru"]["time_to_solve_sec"] is None  # no rate logged
  assert got["lstm"]["lengths_run"] == [10, 20, 50] and got["lstm"]["unfinished"] == []
  assert got["vanilla"]["horizon"] is None and got["vanilla"]["steps_median"] is None
  assert got["gru"]["horizon"] == 10 and got["gru"]["unfinished"] == [100]
  md = memory_report.horizon_markdown(horizon.memory_horizons(rows))
  assert "| copy | lstm | uni | T=20 | 2000 [1500-2500] | 200 | 100 | 10, 20, 50 |" in md
  assert "| copy | vanilla | uni | none solved | - | - | - | 10 |" in md
  assert "| copy | gru | uni | T=10 (T=100 unfinished) | 250 [250-500] | 25 | - | 10 |" in md


def test_median_rate_leaves_out_compilation_and_pauses():
  logged = [{"step": 250, "steps_per_sec": 2.0},    # the interval that compiled
            {"step": 250, "eval_accuracy": 0.5},    # an evaluation row: no rate
            {"step": 500, "steps_per_sec": 10.0}, {"step": 750, "steps_per_sec": 11.0},
            {"step": 1000, "steps_per_sec": 0.1},   # the study was paused here
            {"step": 1250, "steps_per_sec": 10.5}]
  assert sweep_table.median_rate(logged) == pytest.approx(10.0)
  assert sweep_table.median_rate([{"step": 1, "eval_loss": 1.0}]) is None


def test_two_of_three_seeds_rule():
  assert horizon.solved_enough(dict(num_seeds=3, solved_seeds=2))
  assert not horizon.solved_enough(dict(num_seeds=3, solved_seeds=1))
  assert horizon.solved_enough(dict(num_seeds=1, solved_seeds=1))
  assert not horizon.solved_enough(dict(num_seeds=2, solved_seeds=1))
  assert not horizon.solved_enough(dict(num_seeds=0, solved_seeds=0))


@pytest.mark.slow
def test_quick_study_report_has_the_horizon_table(quick_study):
  md = open(os.path.join(quick_study["results"], "compare.md")).read()
  assert "## Memory horizon" in md
  table = md[md.index("## Memory horizon"):]
  assert "| copy | gru | uni | none solved |" in table
  assert "| adding | gru | uni | none solved |" in table


def test_points_past_an_unsolved_length_are_marked_not_lost():
  rows = [_horizon_row("copy", 100, "lstm", 1, steps_to_solve=[900]),   # 1 of 3: unsolved
          _horizon_row("copy", 200, "lstm", None, status="not run"),
          _horizon_row("copy", 500, "lstm", None, status="not run"),
          _horizon_row("copy", 100, "lru", 3, steps_to_solve=[100, 200, 300]),
          _horizon_row("copy", 200, "lru", None, status="not run"),     # still to train
          _horizon_row("copy", 100, "irnn", None, status="diverged"),
          _horizon_row("copy", 200, "irnn", None, status="not run"),
          _horizon_row("copy", 200, "gru", 0),                          # unsolved, but ...
          _horizon_row("copy", 100, "gru", None, status="partial")]     # ... no shorter result
  marked = horizon.mark_past_horizon(rows)
  assert [(r["cell"], r["length"], r["status"], r.get("past_horizon_of")) for r in marked] == [
      ("lstm", 100, "finished", None), ("lstm", 200, "past horizon", 100),
      ("lstm", 500, "past horizon", 100), ("lru", 100, "finished", None),
      ("lru", 200, "not run", None), ("irnn", 100, "diverged", None),
      ("irnn", 200, "past horizon", 100), ("gru", 200, "finished", None),
      ("gru", 100, "partial", None)]
  assert rows[1]["status"] == "not run"  # the input rows are left as they were
  got = {h["cell"]: h for h in horizon.memory_horizons(marked)}
  assert got["lstm"]["past_horizon"] == [200, 500] and got["lstm"]["unfinished"] == []
  assert got["lru"]["unfinished"] == [200] and got["lru"]["past_horizon"] == []
  md = memory_report.horizon_markdown(horizon.memory_horizons(marked))
  assert "| copy | lstm | uni | none solved (T=200, 500 not trained: past the horizon) |" in md
  table = "\n".join(memory_report._task_section("copy", marked))
  assert "not trained (T=100 unsolved)" in table


@pytest.mark.slow
def test_a_study_that_skips_past_the_horizon_trains_no_longer_length(tmp_path):
  """Nothing solves copy or adding in 20 steps, so with skip_past_horizon only each task's
  shortest length trains; the longer points are reported, not trained, also when rebuilt."""
  config = compare_config.get_config("quick")
  config.compare.cells = "gru"
  config.compare.copy_lengths = "5,6"
  config.compare.adding_lengths = "10,12"
  config.compare.skip_past_horizon = True
  runs, results = tmp_path / "runs", str(tmp_path / "results")
  rows = memory_study.run(config, str(runs), results, "TEST")
  assert sorted((r["task"], r["length"], r["status"]) for r in rows) == [
      ("adding", 10, "finished"), ("adding", 12, "past horizon"),
      ("copy", 5, "finished"), ("copy", 6, "past horizon")]
  assert sorted(p.parent.name for p in runs.glob("*/config.json")) == [
      "task=adding,T=10,cell=gru,bidir=false", "task=copy,T=5,cell=gru,bidir=false"]
  md = open(os.path.join(results, "compare.md")).read()
  assert "2 of 4 points finished, 2 not trained past their cell's horizon" in md
  assert "not trained (T=5 unsolved)" in md and "not trained (T=10 unsolved)" in md
  rebuilt = str(tmp_path / "rebuilt")
  memory_study.run(config, str(runs), rebuilt, "TEST", from_workdirs=True)
  assert open(os.path.join(rebuilt, "compare.md")).read() == md
  csv = report.read_csv(os.path.join(results, "compare.csv"))
  assert sorted((r["task"], r["past_horizon_of"]) for r in csv if r["status"] == "past horizon"
                ) == [("adding", "10"), ("copy", "5")]
  config.compare.skip_past_horizon = False  # one rule for every point of a study
  with pytest.raises(ConfigError, match="skip_past_horizon=True, not False"):
    memory_study.run(config, str(runs), results, "TEST")


@pytest.mark.slow
def test_a_shard_of_a_study_that_skips_past_the_horizon_says_to_run_again(tmp_path):
  """A shard trains its part of the shortest lengths; the longer ones wait for the other
  shard, and the command says to run it again then."""
  result = run_entry("experiments.compare", "--config=configs/compare.py:quick",
                     "--config.compare.cells=gru", "--config.compare.tasks=copy",
                     "--config.compare.directions=uni,bi", "--config.compare.copy_lengths=5,6",
                     "--config.compare.skip_past_horizon=True", "--num_shards=2",
                     "--shard_index=0", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "run this same command again to train the next lengths" in result.stdout
  assert sorted(p.parent.name for p in tmp_path.glob("*/config.json")) == [
      "task=copy,T=5,cell=gru,bidir=false"]  # shard 0 of the first wave only
