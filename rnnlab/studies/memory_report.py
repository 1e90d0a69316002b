"""The memory study's report: NAME.md (header, the memory-horizon table, one table per task,
measured vs the literature, plots), NAME.csv and the PNGs, all from the saved rows."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any, Callable, Sequence

import ml_collections

from rnnlab.studies import horizon, memory_grid, plots, report, sweep_table, verdicts
from rnnlab.training import run_folder

COLUMNS = ["task", "length", "cell", "direction", *sweep_table.TABLE_COLUMNS, "metric_at_half",
           "threshold", "past_horizon_of", "workdir"]


def now() -> str:
  """The local time, as the report's header writes it."""
  return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")



def machine_description() -> str:
  """"2 CPU cores (x86_64), Python 3.11.7, JAX 0.10.2 on cpu, flax 0.12.8, optax 0.2.8"."""
  import flax
  import jax
  import optax
  return (f"{os.cpu_count()} CPU cores ({platform.machine()}), Python "
          f"{platform.python_version()}, JAX {jax.__version__} on {jax.default_backend()}, "
          f"flax {flax.__version__}, optax {optax.__version__}")


def session_record(workers: int, seed_map: str, launcher: str = "inline") -> dict[str, Any]:
  """What the report says of one training session: when, where, how loaded, how parallel
  (`workers` processes, or jobs at once for the "local" and "slurm" launchers)."""
  record = {"started": now(), "machine": machine_description(), "workers": workers,
            "load": os.getloadavg()[0], "seed_map": seed_map}
  if launcher != "inline":
    record["launcher"] = launcher
  return record


TITLE = "Comparison study: vanilla RNN, LSTM and GRU on the copy and adding tasks"


def write_report(rows: Sequence[dict[str, Any]], manifest: dict[str, Any], results_dir: str,
                 workdir: str, name: str = "compare", title: str = TITLE) -> None:
  """NAME.csv (the data), the PNG plots (from the saved data) and NAME.md. The rows' workdirs
  are below `workdir`; the CSV names each by its path there."""
  files = memory_grid.report_files(name)
  os.makedirs(results_dir, exist_ok=True)
  csv_path = os.path.join(results_dir, files["csv"])
  run_folder.atomic_write(csv_path, report.csv_text(
      [dict(r, workdir=os.path.relpath(r["workdir"], workdir)) for r in rows], COLUMNS))
  images = []
  for task in dict.fromkeys(r["task"] for r in rows):
    out = os.path.join(results_dir, files["curves"].format(task=task))
    if plots.compare_learning_curves([r for r in rows if r["task"] == task], out):
      images.append((f"Learning curves, {task} (mean over seeds; band: min-max)", out))
  out = os.path.join(results_dir, files["horizon"])
  if plots.memory_horizon(csv_path, out):
    images.append(("Final metric vs sequence length", out))
  out = os.path.join(results_dir, files["horizon_bars"])
  if plots.horizon_bars(horizon.memory_horizons(rows), out):
    images.append(("The memory horizon: the longest T solved by at least 2 of 3 seeds", out))
  sentences = verdicts.VERDICTS.get(name, verdicts.literature_verdicts)
  run_folder.atomic_write(os.path.join(results_dir, files["md"]),
                          report_markdown(rows, manifest, images, title=title,
                                          sentences=sentences, csv_name=files["csv"],
                                          records=None if same_dir(results_dir, workdir)
                                          else files["records"]))


def same_dir(a: str, b: str) -> bool:
  """Whether paths `a` and `b` name one folder (the report in the study's workdir: no records)."""
  return os.path.realpath(a) == os.path.realpath(b)



def horizon_markdown(horizons: Sequence[dict[str, Any]]) -> str:
  """The headline table: per task, cell and direction, the longest T solved by >= 2/3 of the
  seeds, steps to solve there (median, range) and seconds to solve (wall; at the median rate)."""
  def horizon_text(h: dict[str, Any]) -> str:
    text = "none solved" if h["horizon"] is None else f"T={h['horizon']}"
    if h["unfinished"]:
      text += f" (T={', '.join(map(str, h['unfinished']))} unfinished)"
    if h.get("past_horizon"):
      text += f" (T={', '.join(map(str, h['past_horizon']))} not trained: past the horizon)"
    return text

  rows = [dict(h, lengths=", ".join(map(str, h["lengths_run"])) or "-") for h in horizons]
  return report.markdown_table(
      rows, ["task", "cell", "direction", "horizon", "steps", "wall", "rate", "lengths"],
      ["task", "cell", "direction", "memory horizon", "steps to solve it (median [min-max])",
       "wall s to solve it", "s to solve it at the median rate", "T finished"],
      formatters={
          "horizon": horizon_text,
          "steps": lambda h: ("-" if h["steps_median"] is None else
                              f"{h['steps_median']:.0f} [{h['steps_min']}-{h['steps_max']}]"),
          "wall": lambda h: ("-" if h["wall_to_solve_sec"] is None
                             else f"{h['wall_to_solve_sec']:.0f}"),
          "rate": lambda h: ("-" if h.get("time_to_solve_sec") is None
                             else f"{h['time_to_solve_sec']:.0f}"),
      })


def _grid_text(grid: dict[str, Any]) -> str:
  parts = [f"cells {{{grid['cells']}}}", f"directions {{{grid['directions']}}}"]
  for task in str(grid["tasks"]).split(","):
    task = task.strip()
    parts.append(f"{task} T in {{{grid.get(f'{task}_lengths', '?')}}}")
  return ", ".join(parts)


def _rows_grid_text(rows: Sequence[dict[str, Any]]) -> str:
  parts = []
  for task in dict.fromkeys(r["task"] for r in rows):
    here = [r for r in rows if r["task"] == task]
    lengths = sorted({r["length"] for r in here})
    combos = ", ".join(f"{cell} {d}" for cell, d in dict.fromkeys((r["cell"], r["direction"])
                                                                  for r in here))
    parts.append(f"{task} T in {{{', '.join(map(str, lengths))}}} x {{{combos}}} "
                 f"({len(here)} points)")
  return "; ".join(parts)


def _missing_from_default(rows: Sequence[dict[str, Any]], default_grid: dict[str, Any]
                          ) -> list[tuple[Any, ...]]:
  # The grid's axes alone: per-variant settings do not add or remove points.
  default = ml_collections.ConfigDict(
      {"compare": {k: v for k, v in default_grid.items() if k != "overrides"}})
  default.task = ml_collections.ConfigDict({"min_length": 0, "solved_threshold": None})
  ran = {(r["task"], r["length"], r["cell"], r["direction"]) for r in rows}
  out = []
  for ov in memory_grid.grid_overrides(default):
    o = dict(ov)
    key = (o["task.name"], o["task.length"], memory_grid.cell_label(o),
           "bi" if o["model.bidirectional"] else "uni")
    if key not in ran:
      out.append(key)
  return out


def _points_text(points: Sequence[tuple[Any, ...]]) -> str:
  by_task: dict[str, list[str]] = {}
  for task, length, cell, d in points:
    by_task.setdefault(task, []).append(f"{cell} {d} T={length}")
  return "; ".join(f"{task}: {', '.join(v)}" for task, v in by_task.items())


def report_markdown(rows: Sequence[dict[str, Any]], manifest: dict[str, Any],
                    images: Sequence[tuple[str, str]] = (), title: str = TITLE,
                    sentences: Callable[[Sequence[dict[str, Any]]], list[str]] | None = None,
                    csv_name: str = "compare.csv", records: str | None = None) -> str:
  """The text of the report: header, the memory horizons, one table per task, measured vs the
  literature, plots. Only the manifest and the rows go in, so rebuilding the report from the
  workdirs, or from the records, gives the same text. `records`: the folder of run records
  beside the report (`rnnlab.studies.records`), or None when the report is in the study's
  workdir."""
  sentences = sentences or verdicts.literature_verdicts
  t, m = manifest["train"], manifest["model"]
  done = sum(r.get("status") == "finished" for r in rows)
  lines = [f"# {title}", ""]
  commands = manifest.get("commands", [])
  lines.append("- Training command" + ("s (run one after the other into the same workdirs)"
                                       if len(commands) > 1 else "") + ": "
               + "; ".join(f"`{c}`" for c in commands))
  lines.append(f"- Date: study started {manifest.get('started', '?')}")
  for session in manifest.get("sessions", []):
    lines.append(f"- Session started {session['started']}: {session['machine']}; "
                 + (f"{session['workers']} worker process(es)" if "launcher" not in session else
                    f"launcher={session['launcher']}, at most {session['workers']} jobs at once")
                 + "; load average "
                 f"{session['load']:.1f} at its start; seeds mapped by {session['seed_map']}")
  lines.append(
      f"- Budget per point: at most {t['num_steps']} steps (a point stops early once every seed "
      f"is solved), batch {t['batch_size']}, {t['optimizer']} lr {t['learning_rate']}, global-norm clip "
      f"{t['grad_clip']}, hidden {m['hidden_size']} per direction, {m['num_layers']} layer; "
      f"{t['num_seeds']} seeds per point trained as one program (train.num_seeds); evaluation "
      f"on {t['eval_batches']} x {t['eval_batch_size']} held-out examples every "
      f"{t['eval_every']} steps")
  if manifest.get("variants"):
    lines.append("- Per-variant settings (override the above for those points): "
                 + "; ".join(f"{k}: `{v}`" for k, v in manifest["variants"].items()))
  past = sum(r.get("status") == horizon.PAST_HORIZON for r in rows)
  lines.append(f"- Grid run: {_rows_grid_text(rows)}; {done} of {len(rows)} points finished"
               + (f", {past} not trained past their cell's horizon" if past else ""))
  if manifest.get("skip_past_horizon"):
    lines.append("- Past the horizon (`config.compare.skip_past_horizon`): each task's lengths "
                 "train shortest first, and a cell and direction that finished a length with "
                 "fewer than 2/3 of its seeds solved is not trained at the longer ones (taken "
                 "not to hold a longer delay); those points read \"not trained\"")
  lines.append("- Wall time per point: from summary.json, summed over the sessions of the point "
               "that ended normally (compilation included); a session killed part-way and "
               "resumed is not counted, so such a point's time is an underestimate, and time "
               "the study was paused or shared the cores is counted. Steps/s: the point's median "
               "over its log intervals (evaluations and checkpoints included; compilation, and "
               "pauses or load lasting less than half the point's run, fall outside the median), "
               "the rate to read for its cost")
  default = manifest.get("default_grid")
  if default:
    missing = _missing_from_default(rows, default)
    if missing:
      lines.append(f"- **A declared subset of the default grid** ({_grid_text(default)}, "
                   f"{len(missing) + len(rows)} points): {len(missing)} points not run "
                   f"({_points_text(missing)})")
  if records is None:
    lines.append(f"- Workdirs: beside this report, one per point (`{csv_name}` has every "
                 "number); the report is rebuilt from them with the same command and "
                 "`--from_workdirs`")
  else:
    lines.append(f"- Run records: `{records}/` beside this report (`{csv_name}` has every "
                 "number): each point's config, metrics and summary, and an unfinished point's "
                 "latest checkpoints. The report is rebuilt from them with the same command, "
                 f"`--workdir=` that folder and `--from_workdirs`; copied to a workdir, they "
                 "continue the study there with the same command")
  lines.append("")
  lines += ["## Memory horizon", "",
            "The longest sequence length T at which at least 2 of 3 seeds (2/3 of the seeds) "
            "reached the task's solved threshold, with the steps those seeds took there, the "
            "wall time of that point prorated to the median steps (compilation included) and "
            "the median steps at the point's median steps/s.", "",
            horizon_markdown(horizon.memory_horizons(rows)), ""]
  for task in dict.fromkeys(r["task"] for r in rows):
    lines += _task_section(task, [r for r in rows if r["task"] == task])
  lines += ["## Measured vs the literature", ""]
  lines += [f"- {s}" for s in sentences(rows)]
  lines.append("")
  if images:
    lines += ["## Plots", ""]
    for caption, path in images:
      lines += [f"{caption}:", "", f"![{caption}]({os.path.basename(path)})", ""]
  return "\n".join(lines)



_TASK_TEXT = {
    "copy": ("Copy task (Arjovsky et al. 2016): recall accuracy on the 10 symbols after a delay "
             "T; the chance baseline is the loss 10 ln(8)/(T+20) of always predicting blank and "
             "then guessing (accuracy 1/8); solved at recall accuracy >= {threshold}.",
             "recall accuracy"),
    "adding": ("Adding problem (Le et al. 2015 form): MSE of the sum of the two marked values; "
               "the chance baseline is 0.167 (always predict 1); solved at MSE < {threshold}.",
               "MSE"),
}


# Published numbers for the same tasks (the copy baseline 10 ln 8 / (T + 20) and the adding

_DEFAULT_THRESHOLD = {"copy": 0.99, "adding": 0.01}


def _value_text(row: dict[str, Any]) -> str:
  status = row.get("status")
  if status == "partial":
    return "unfinished (stopped part-way)"
  if status == horizon.PAST_HORIZON:
    return f"not trained (T={row['past_horizon_of']} unsolved)"
  if status in ("not run", "diverged"):
    return status
  return report.mean_sd(row.get("metric_mean"), row.get("metric_sd"))


def _task_section(task: str, rows: Sequence[dict[str, Any]]) -> list[str]:
  text, metric = _TASK_TEXT.get(task, (f"Task {task}.", "metric"))
  thresholds = sorted({r["threshold"] for r in rows if r.get("threshold") is not None})
  text = text.format(threshold=" / ".join(f"{t:g}" for t in thresholds)
                     or _DEFAULT_THRESHOLD.get(task, "?"))
  columns = ["cell", "direction", "length", "value", "loss_mean", "baseline", "solved",
             "steps", "wall_time_sec", "steps_per_sec"]
  headers = ["cell", "direction", "T", f"final {metric} (mean ± sd)", "final loss",
             "chance baseline", "steps to solve (mean of the solved seeds)", "steps run",
             "wall time (s)", "steps/s (median)"]
  if any(verdicts.literature_text(r) for r in rows):
    columns.append("literature")
    headers.append("literature (same task)")
  table = report.markdown_table(rows, columns, headers, formatters={
      "value": _value_text,
      "baseline": lambda r: ("-" if r.get("baseline") is None
                             else f"{report.format_value(r['baseline'], 3)} ({r['baseline_of']})"),
      "solved": sweep_table.steps_to_solve_text,
      "wall_time_sec": lambda r: ("-" if r.get("wall_time_sec") is None
                                  else f"{r['wall_time_sec']:.0f}"),
      "steps_per_sec": lambda r: ("-" if r.get("steps_per_sec") is None
                                  else f"{r['steps_per_sec']:.3g}"),
      "literature": lambda r: verdicts.literature_text(r) or "-",
  })
  return [f"## {task}", "", text, "", table]
