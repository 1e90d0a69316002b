"""The memory study: every grid point trained through the sweep (resumable, shardable, in
parallel worker processes), and the rows its report is built from.

Every grid point is an ordinary training run in its own workdir (`rnnlab.studies.sweep`), with all
of `train.num_seeds` seeds in one program, so the study resumes point by point and its report can
be rebuilt from the workdirs alone.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import ml_collections

from rnnlab.errors import ConfigError
from rnnlab.studies import (
  horizon,
  launch,
  memory_grid,
  memory_report,
  records,
  sweep,
  sweep_table,
)
from rnnlab.training import run_files


def run(config: ml_collections.ConfigDict, workdir: str, results_dir: str, command: str,
        from_workdirs: bool = False, default_grid: dict[str, Any] | None = None,
        training: launch.Training = launch.Training()) -> list[dict[str, Any]]:
  """Trains every unfinished grid point (unless `from_workdirs`) and writes the report.

  A study accumulates: running a second grid (e.g. a declared subset with other lengths) into
  the same workdir adds its points to the study's list in workdir/sweep.json, and the report
  covers every listed point and names every training command. The budget and model settings
  must then be the same (ConfigError otherwise).

  Args:
    config: configs/compare.py's config (training config + `compare` grid).
    workdir: base directory, one sub-workdir per point, and the manifest sweep.json.
    results_dir: where compare.md, compare.csv and the PNGs go, and the run records
      (compare_runs/, `rnnlab.studies.records`) unless it is `workdir`.
    command: the command line that produced this, for the report header.
    from_workdirs: build the report from the workdirs listed in workdir/sweep.json, no training.
    default_grid: the default `compare` section, to say in the header if a subset was run.
    training: how the unfinished points of this shard are trained (`launch.train_points`):
      here in worker processes, or as submitit jobs ("local" waits for them; "slurm" returns at
      once and the report covers the points finished so far: rebuild it with from_workdirs once
      the jobs are done).

  Returns:
    The report's rows (one per point).
  """
  if results_dir != workdir:
    run_files.check_writable_dir(results_dir, "--results_dir")  # before hours of training
  if from_workdirs:
    manifest = sweep.read_manifest(workdir)
    points = sweep.load_points(workdir)
  else:
    training.check()  # before anything is written
    new_points = memory_grid.make_points(config, workdir)
    mine = sweep.shard(new_points, training.num_shards, training.shard_index)
    from rnnlab.training import train  # local: keeps the report code free of model imports
    seed_map = train.resolve_seed_map(config.train.seed_map, config.train.num_seeds)
    session = memory_report.session_record(training.at_once(len(mine)), seed_map,
                                           training.launcher)
    manifest = {"commands": [command], "default_grid": default_grid,
                "train": config.train.to_dict(), "model": config.model.to_dict(),
                "variants": {k: str(v) for k, v in config.compare.get("overrides", {}).items()},
                "started": session["started"], "sessions": [session],
                "skip_past_horizon": bool(config.compare.get("skip_past_horizon", False))}
    points = list(new_points)
    previous = _read_manifest_or_none(workdir)
    if previous is not None:
      _check_same_study(previous, manifest, workdir)
      manifest["started"] = previous.get("started", manifest["started"])
      manifest["commands"] = list(dict.fromkeys(previous.get("commands", []) + [command]))
      manifest["sessions"] = previous.get("sessions", []) + [session]
      known = {p.name for p in new_points}
      points = [p for p in sweep.load_points(workdir) if p.name not in known] + points
    launch.check_not_in_use(new_points, training)  # a second run of a running study
    os.makedirs(workdir, exist_ok=True)
    sweep.write_manifest(workdir, points, list(memory_grid.GRID_AXES), manifest)
    _train(points, new_points, workdir, training, manifest["skip_past_horizon"])
  rows = sort_rows(_rows(points))
  if manifest.get("skip_past_horizon"):
    rows = horizon.mark_past_horizon(rows)
  name = memory_grid.report_name(config)
  memory_report.write_report(rows, manifest, results_dir, workdir, name=name,
                             title=str(config.compare.get("title", memory_report.TITLE)))
  if not memory_report.same_dir(results_dir, workdir):  # else the workdirs are there
    records.write(workdir, points, os.path.join(results_dir,
                                                memory_grid.report_files(name)["records"]))
  return rows


def _rows(points: Sequence[sweep.Point]) -> list[dict[str, Any]]:
  return [_row(p, r) for p, r in zip(points, sweep.collect(points))]


def _train(points: Sequence[sweep.Point], new_points: Sequence[sweep.Point], workdir: str,
           training: launch.Training, skip_past_horizon: bool) -> None:
  """Trains the unfinished of `new_points` (this run's grid; `points`: every point of the
  study) with `launch.train_points`. Skipping past the horizon, they train in waves, each task's
  shortest length first, and a point not yet started whose (task, cell, direction) finished a
  shorter length of the study unsolved is not trained (`horizon.mark_past_horizon`; a point
  already started resumes). A wave that other shards or Slurm jobs still train ends this run:
  running it again once they are done trains the next wave."""
  if not skip_past_horizon:
    launch.train_points(new_points, workdir, training)
    return
  mine = {p.name for p in new_points}
  rows = _rows(points)
  lengths: dict[str, set[int]] = {}  # each task's lengths
  for r in rows:
    lengths.setdefault(r["task"], set()).add(r["length"])
  rank = {(task, t): i for task, ts in lengths.items() for i, t in enumerate(sorted(ts))}
  for wave_rank in range(max(len(ts) for ts in lengths.values())):
    if wave_rank:  # read every point again: other shards and processes train them too
      rows = _rows(points)
    rows = horizon.mark_past_horizon(rows)
    wave = [p for p, r in zip(points, rows) if p.name in mine
            and rank[(r["task"], r["length"])] == wave_rank
            and r["status"] != horizon.PAST_HORIZON]
    if not launch.train_points(wave, workdir, training).done:
      return


def _check_same_study(previous: dict[str, Any], current: dict[str, Any], workdir: str) -> None:
  from rnnlab.training import train  # local: keeps the report code free of model imports

  before, now = (bool(m.get("skip_past_horizon", False)) for m in (previous, current))
  if before != now:
    raise ConfigError(f"{workdir!r} holds a study with config.compare.skip_past_horizon={before},"
                      f" not {now}: which points a study trains is one rule for all of them. "
                      "Use a new workdir for a different study.")

  for section in ("train", "model"):
    # Keys added to rnnlab after the study started count as their defaults.
    before = train.with_base_defaults({section: previous.get(section, {})})[section]
    now = current[section]
    for key in sorted(set(before) | set(now)):
      if before.get(key) != now.get(key):
        raise ConfigError(
            f"{workdir!r} holds a study with config.{section}.{key}={before.get(key)!r}, not "
            f"{now.get(key)!r}: every point of a study has the same budget and model. Use a "
            "new workdir for a different study.")


_CELL_ORDER = {c: i for i, c in enumerate(
    ("vanilla", "irnn", "lstm", "lstm:chrono", "gru", "gru:chrono", "mingru", "minlstm", "lru"))}


def sort_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Rows ordered by task (first seen first), length, cell (vanilla, lstm, gru, others) and
  direction (uni, bi)."""
  tasks = {t: i for i, t in enumerate(dict.fromkeys(r["task"] for r in rows))}
  return sorted(rows, key=lambda r: (tasks[r["task"]], r["length"],
                                     _CELL_ORDER.get(r["cell"], 99), r["cell"],
                                     r["direction"] != "uni"))


def _read_manifest_or_none(workdir: str) -> dict[str, Any] | None:
  if not os.path.exists(os.path.join(workdir, sweep.MANIFEST_FILE)):
    return None
  return sweep.read_manifest(workdir)



def _row(point: sweep.Point, row: dict[str, Any]) -> dict[str, Any]:
  ov = dict(point.overrides)
  row = dict(row)
  row.update(threshold=_threshold(point), task=ov["task.name"], length=ov["task.length"],
             cell=memory_grid.cell_label(ov),
             direction="bi" if ov["model.bidirectional"] else "uni", workdir=point.workdir)
  return row


def _threshold(point: sweep.Point) -> float | None:
  """The solved threshold the point's run used (None for a point not started)."""
  from rnnlab import tasks
  if "task" not in point.config:
    return None
  try:
    return float(tasks.get(point.config.task).solved_threshold)
  except (ValueError, KeyError, AttributeError):
    return None


def summary_text(rows: Sequence[dict[str, Any]]) -> str:
  """What the entry point prints: the memory horizons and each point's final metric."""
  lines = [memory_report.horizon_markdown(horizon.memory_horizons(rows)), ""]
  for r in rows:
    value = ("-" if r.get("metric_mean") is None else
             f"{r['metric']} {r['metric_mean']:.4g}")
    lines.append(f"{r['task']} T={r['length']} {r['cell']} {r['direction']}: {value}, "
                 f"{sweep_table.steps_to_solve_text(r)}")
  return "\n".join(lines)
