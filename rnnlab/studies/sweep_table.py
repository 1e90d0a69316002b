"""A sweep's table: one row per point, built only from the point workdirs' files
(summary.json, config.json, metrics.jsonl, diverged.json); sweep.md and sweep.csv."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

from rnnlab.studies import report
from rnnlab.training import metrics_log, run_folder

TABLE_MD = "sweep.md"
TABLE_CSV = "sweep.csv"
DIVERGED_FILE = "diverged.json"  # a point whose loss became non-finite: step and message


def read_json(path: str) -> Any:
  """The JSON in `path`, or None if it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def read_summary(workdir: str) -> dict[str, Any] | None:
  """A run's summary.json (written when its training ends), or None before that."""
  return read_json(os.path.join(workdir, run_folder.SUMMARY_FILE))


def _per_seed(summary: dict[str, Any], metric: str) -> list[float]:
  final = summary.get("final", {})
  per_seed = final.get("eval_per_seed", {}).get(metric)
  if per_seed is not None:
    return [float(v) for v in per_seed]
  value = final.get(f"eval_{metric}")
  return [] if value is None else [float(value)]


def point_row(point: Any, status: str) -> dict[str, Any]:
  """One table row from a point's workdir files (summary.json, config.json, metrics.jsonl).

  point: a `sweep.Point`; status: its `sweep.status`."""
  row: dict[str, Any] = {"name": point.name}
  row.update({k: v for k, v in point.overrides})
  diverged = read_json(os.path.join(point.workdir, DIVERGED_FILE))
  if diverged is not None:
    row.update(status="diverged", steps=diverged.get("step"), diverged_at=diverged.get("step"))
    return row
  summary = read_summary(point.workdir)
  logged = metrics_log.read(point.workdir)
  if summary is None:
    row.update(status="partial" if logged or os.path.exists(
        os.path.join(point.workdir, run_folder.CONFIG_FILE)) else "not run",
               steps=max((r["step"] for r in logged), default=0))
    return row
  metric = summary["metric"]
  values = _per_seed(summary, metric)
  losses = _per_seed(summary, "loss")
  solved_at = summary.get("steps_to_solve", -1)
  solved_at = solved_at if isinstance(solved_at, list) else [solved_at]
  solved = [s for s in solved_at if s is not None and s >= 0]
  row.update(
      status=status,
      steps=summary.get("steps"),
      metric=metric,
      metric_mean=float(np.mean(values)) if values else None,
      metric_sd=float(np.std(values)) if len(values) > 1 else (0.0 if values else None),
      metric_per_seed=values,
      loss_mean=float(np.mean(losses)) if losses else None,
      baseline_of=summary.get("baseline_of"),
      baseline=summary.get("baseline"),
      num_seeds=len(solved_at),
      solved_seeds=len(solved),
      steps_to_solve_mean=float(np.mean(solved)) if solved else None,
      steps_to_solve=solved_at,
      wall_time_sec=summary.get("wall_time_sec"),
      steps_per_sec=median_rate(logged),
      metric_at_half=metric_at_half(logged, metric, summary.get("steps")),
  )
  return row


def median_rate(metrics: Sequence[dict[str, Any]]) -> float | None:
  """Train steps per second of a run at its median over its log intervals (evaluation and
  checkpoints included; the interval that compiled, and pauses or load lasting less than half
  the run, fall outside the median), or None when it logged no rate."""
  rates = [r["steps_per_sec"] for r in metrics if r.get("steps_per_sec")]
  return float(np.median(rates)) if rates else None


def metric_at_half(metrics: Sequence[dict[str, Any]], metric: str, steps: int | None
                   ) -> float | None:
  """The eval `metric` (mean over seeds) at the evaluation nearest half the `steps` run: with the
  final value it says whether a run was still improving when its budget ran out."""
  key = f"eval_{metric}"
  evals = [r for r in metrics if key in r]
  if not evals or not steps:
    return None
  return float(min(evals, key=lambda r: abs(r["step"] - steps / 2))[key])


def steps_to_solve_text(row: dict[str, Any]) -> str:
  """"1250 (3/3)" (mean over the solved seeds), "not solved", or "-" for a run not finished."""
  if row.get("status") == "diverged":
    return f"diverged at step {row.get('diverged_at')}"
  if row.get("solved_seeds") is None:
    return "-"
  if row["solved_seeds"] == 0:
    return "not solved"
  return f"{row['steps_to_solve_mean']:.0f} ({row['solved_seeds']}/{row['num_seeds']})"


TABLE_COLUMNS = ["status", "steps", "metric", "metric_mean", "metric_sd", "metric_per_seed",
                 "loss_mean", "baseline_of", "baseline", "solved_seeds", "num_seeds",
                 "steps_to_solve_mean", "steps_to_solve", "wall_time_sec", "steps_per_sec"]


def table_text(rows: Sequence[dict[str, Any]], axes: Sequence[str]) -> tuple[str, str]:
  """(Markdown, CSV) of the sweep's rows; `axes` are the swept keys (one column each)."""
  csv = report.csv_text(rows, ["name", *axes, *TABLE_COLUMNS])
  md_columns = ["name", *axes, "status", "steps", "metric", "value", "loss_mean", "baseline",
                "solved", "wall_time_sec"]
  headers = ["point", *axes, "status", "steps", "metric", "final (mean ± sd over seeds)",
             "final loss", "chance baseline", "steps to solve", "wall time (s)"]
  md = report.markdown_table(rows, md_columns, headers, formatters={
      "value": lambda r: report.mean_sd(r.get("metric_mean"), r.get("metric_sd")),
      "baseline": lambda r: ("-" if r.get("baseline") is None
                             else f"{report.format_value(r['baseline'])} ({r['baseline_of']})"),
      "solved": steps_to_solve_text,
      "wall_time_sec": lambda r: ("-" if r.get("wall_time_sec") is None
                                  else f"{r['wall_time_sec']:.0f}"),
  })
  return md, csv


def write_table(rows: Sequence[dict[str, Any]], base_workdir: str, axes: Sequence[str],
                title: str = "Sweep") -> tuple[str, str]:
  """Writes base_workdir/sweep.md and sweep.csv; returns their paths."""
  md, csv = table_text(rows, axes)
  done = sum(r.get("status") == "finished" for r in rows)
  md = f"# {title}: {base_workdir}\n\n{done} of {len(rows)} points finished.\n\n{md}"
  md_path = os.path.join(base_workdir, TABLE_MD)
  csv_path = os.path.join(base_workdir, TABLE_CSV)
  run_folder.atomic_write(md_path, md)
  run_folder.atomic_write(csv_path, csv)
  return md_path, csv_path
