"""The comparison study: a grid of (task, length, cell, direction) runs and its report.

Every grid point is an ordinary training run in its own workdir (`rnnlab.studies.sweep`), with all of
`train.num_seeds` seeds trained as one program, so the study resumes point by point and its
report can be rebuilt from the workdirs alone. The grid lives in `config.compare` (see
configs/compare.py); the rest of the config is every point's training config.

Also here: the seeds-in-one-program speed-up measurement (`measure_seeds_speedup`).
"""

from __future__ import annotations

import copy
import datetime
import os
import platform
import time
from typing import Any, Callable, Sequence

import ml_collections

from rnnlab.errors import ConfigError
from rnnlab.studies import plots, report, sweep
from rnnlab.training import metrics_log, run_folder

GRID_AXES = ("task.name", "task.length", "model.cell", "model.bidirectional")
DIRECTIONS = {"uni": False, "bi": True}
INITS = ("standard", "chrono")
COLUMNS = ["task", "length", "cell", "direction", *sweep.TABLE_COLUMNS, "metric_at_half", "threshold",
           "workdir"]


# ----------------------------------------------------------------------------- the grid

def _names(config: ml_collections.ConfigDict, key: str) -> list[str]:
  text = config.compare[key]
  values = [v.strip() for v in str(text).split(",") if v.strip()]
  if not values:
    raise ConfigError(f"config.compare.{key} is empty; give a comma-separated list")
  return values


def _lengths(config: ml_collections.ConfigDict, task: str) -> list[int]:
  key = f"{task}_lengths"
  if key not in config.compare:
    raise ConfigError(f"config.compare.{key} is missing: the lengths to run task {task!r} at")
  out = []
  for v in _names(config, key):
    try:
      out.append(int(v))
    except ValueError:
      raise ConfigError(f"config.compare.{key}: {v!r} is not an integer length") from None
  return out


def report_name(config: ml_collections.ConfigDict) -> str:
  """The study's file stem: "compare" (compare.md, compare.csv, ...) or e.g. "horizon"."""
  return str(config.compare.get("name", "compare"))


def report_files(name: str) -> dict[str, str]:
  """The report's file names for a study called `name`."""
  return {"md": f"{name}.md", "csv": f"{name}.csv", "curves": f"{name}_{{task}}_curves.png",
          "horizon": f"{name}_horizon.png"}


def parse_cell(entry: str) -> tuple[str, str]:
  """"lstm" -> ("lstm", "standard"); "lstm:chrono" -> ("lstm", "chrono")."""
  name, _, init = entry.partition(":")
  init = init or "standard"
  if init not in INITS:
    raise ConfigError(f"config.compare.cells: {entry!r} has init {init!r}; write CELL or "
                      f"CELL:INIT with INIT one of: {', '.join(INITS)}")
  return name, init


def cell_label(overrides: dict[str, Any]) -> str:
  """A point's cell as the report names it: "lstm", or "lstm:chrono" for a non-standard init."""
  init = overrides.get("model.init", "standard")
  return overrides["model.cell"] + ("" if init == "standard" else f":{init}")


def grid_overrides(config: ml_collections.ConfigDict) -> list[sweep.Overrides]:
  """The grid's points as config overrides: task, length, cell, direction (slowest first).

  A cell written CELL:chrono adds model.init=chrono and model.chrono_t_max = the point's
  sequence length (Tallec & Ollivier's T_max: the longest dependency to expect). With
  config.compare.copy_solved_threshold set, copy points get it as task.solved_threshold.
  """
  from rnnlab import tasks

  directions = _names(config, "directions")
  for d in directions:
    if d not in DIRECTIONS:
      raise ConfigError(f"config.compare.directions: {d!r} is not one of: uni, bi")
  cell_entries = [parse_cell(c) for c in _names(config, "cells")]
  copy_threshold = config.compare.get("copy_solved_threshold")
  out = []
  for task in _names(config, "tasks"):
    for length in _lengths(config, task):
      for cell, init in cell_entries:
        for d in directions:
          ov: list[tuple[str, Any]] = [("task.name", task), ("task.length", length),
                                       ("model.cell", cell), ("model.bidirectional", DIRECTIONS[d])]
          if init != "standard":
            task_config = ml_collections.ConfigDict(dict(config.task.to_dict(), name=task,
                                                         length=length))
            ov += [("model.init", init),
                   ("model.chrono_t_max", float(tasks.get(task_config).max_time))]
          if task == "copy" and copy_threshold is not None:
            ov.append(("task.solved_threshold", float(copy_threshold)))
          out.append(tuple(ov))
  return out


def point_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The training config shared by every point: `config` without its `compare` section."""
  out = copy.deepcopy(config)
  out.unlock()
  if "compare" in out:
    del out["compare"]
  return out


def default_grid(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The full grid of the study's config file (configs/<name>.py), to name a declared subset."""
  import importlib
  module = importlib.import_module(f"configs.{report_name(config)}")
  return module.get_config().compare.to_dict()


def make_points(config: ml_collections.ConfigDict, workdir: str) -> list[sweep.Point]:
  """The grid's validated points under `workdir` (ConfigError before any training)."""
  if "compare" not in config:
    raise ConfigError("the config has no `compare` section; use configs/compare.py")
  return sweep.make_points(point_config(config), grid_overrides(config), workdir)


# ----------------------------------------------------------------------------- running

def run(config: ml_collections.ConfigDict, workdir: str, results_dir: str, command: str,
        from_workdirs: bool = False, default_grid: dict[str, Any] | None = None,
        num_shards: int = 1, shard_index: int = 0) -> list[dict[str, Any]]:
  """Trains every unfinished grid point (unless `from_workdirs`) and writes the report.

  A study accumulates: running a second grid (e.g. a declared subset with other lengths) into
  the same workdir adds its points to the study's list in workdir/sweep.json, and the report
  covers every listed point and names every training command. The budget and model settings
  must then be the same (ConfigError otherwise).

  Args:
    config: configs/compare.py's config (training config + `compare` grid).
    workdir: base directory, one sub-workdir per point, and the manifest sweep.json.
    results_dir: where compare.md, compare.csv and the PNGs go.
    command: the command line that produced this, for the report header.
    from_workdirs: build the report from the workdirs listed in workdir/sweep.json, no training.
    default_grid: the default `compare` section, to say in the header if a subset was run.
    num_shards, shard_index: run only every num_shards-th point (see `sweep.shard`).

  Returns:
    The report's rows (one per point).
  """
  if from_workdirs:
    manifest = sweep.read_manifest(workdir)
    points = sweep.load_points(workdir)
  else:
    new_points = make_points(config, workdir)
    mine = sweep.shard(new_points, num_shards, shard_index)
    manifest = {"commands": [command], "default_grid": default_grid,
                "train": config.train.to_dict(), "model": config.model.to_dict(),
                "started": _now()}
    points = list(new_points)
    previous = _read_manifest_or_none(workdir)
    if previous is not None:
      _check_same_study(previous, manifest, workdir)
      manifest["started"] = previous.get("started", manifest["started"])
      manifest["commands"] = list(dict.fromkeys(previous.get("commands", []) + [command]))
      known = {p.name for p in new_points}
      points = [p for p in sweep.load_points(workdir) if p.name not in known] + points
    os.makedirs(workdir, exist_ok=True)
    sweep.write_manifest(workdir, points, list(GRID_AXES), manifest)
    sweep.run_points(mine)
  rows = sort_rows([_row(p, r) for p, r in zip(points, sweep.collect(points))])
  write_report(rows, manifest, results_dir, workdir, command, from_workdirs,
               name=report_name(config), title=str(config.compare.get("title", TITLE)))
  return rows


def _check_same_study(previous: dict[str, Any], current: dict[str, Any], workdir: str) -> None:
  from rnnlab.training import train  # local: keeps the report code free of model imports

  for section in ("train", "model"):
    # Keys added to rnnlab after the study started count as their defaults.
    before = train.with_base_defaults({section: previous.get(section, {})})[section]
    now = current[section]
    for key in sorted(set(before) | set(now)):
      if before.get(key) != now.get(key):
        raise ConfigError(
            f"{workdir!r} holds a study with config.{section}.{key}={before.get(key)!r}, not "
            f"{now.get(key)!r}: every point of a study has the same budget and model. Use a "
            "new --workdir for a different study.")


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


def _now() -> str:
  return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _row(point: sweep.Point, row: dict[str, Any]) -> dict[str, Any]:
  ov = dict(point.overrides)
  row = dict(row)
  row.update(threshold=_threshold(point), task=ov["task.name"], length=ov["task.length"],
             cell=cell_label(ov),
             direction="bi" if ov["model.bidirectional"] else "uni", workdir=point.workdir,
             metric_at_half=_metric_at_half(point.workdir, row))
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


def _metric_at_half(workdir: str, row: dict[str, Any]) -> float | None:
  """The eval metric (mean over seeds) at the evaluation nearest half the steps run: with the
  final value it says whether a run was still improving when the budget ran out."""
  if not row.get("metric") or not row.get("steps"):
    return None
  key = f"eval_{row['metric']}"
  evals = [r for r in metrics_log.read(workdir) if key in r]
  if not evals:
    return None
  return float(min(evals, key=lambda r: abs(r["step"] - row["steps"] / 2))[key])


# ----------------------------------------------------------------------------- the report

def machine_description() -> str:
  """"2 CPU cores (x86_64), JAX 0.10.2 on cpu"."""
  import jax
  cores = os.cpu_count()
  return (f"{cores} CPU cores ({platform.machine()}), JAX {jax.__version__} on "
          f"{jax.default_backend()}")


TITLE = "Comparison study: vanilla RNN, LSTM and GRU on the copy and adding tasks"


def write_report(rows: Sequence[dict[str, Any]], manifest: dict[str, Any], results_dir: str,
                 workdir: str, command: str, from_workdirs: bool, name: str = "compare",
                 title: str = TITLE) -> None:
  """NAME.csv (the data), the PNG plots (from the saved data) and NAME.md."""
  files = report_files(name)
  os.makedirs(results_dir, exist_ok=True)
  csv_path = os.path.join(results_dir, files["csv"])
  run_folder.atomic_write(csv_path, report.csv_text(rows, COLUMNS))
  images = []
  for task in dict.fromkeys(r["task"] for r in rows):
    out = os.path.join(results_dir, files["curves"].format(task=task))
    if plots.compare_learning_curves([r for r in rows if r["task"] == task], out):
      images.append((f"Learning curves, {task} (mean over seeds; band: min-max)", out))
  out = os.path.join(results_dir, files["horizon"])
  if plots.memory_horizon(csv_path, out):
    images.append(("Final metric vs sequence length (the memory horizon)", out))
  run_folder.atomic_write(os.path.join(results_dir, files["md"]),
                    report_markdown(rows, manifest, workdir, command, from_workdirs, images,
                                    title=title,
                                    verdicts=VERDICTS.get(name, literature_verdicts),
                                    csv_name=files["csv"]))


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
  default = ml_collections.ConfigDict({"compare": default_grid})
  default.task = ml_collections.ConfigDict({"min_length": 0, "solved_threshold": None})
  ran = {(r["task"], r["length"], r["cell"], r["direction"]) for r in rows}
  out = []
  for ov in grid_overrides(default):
    o = dict(ov)
    key = (o["task.name"], o["task.length"], cell_label(o),
           "bi" if o["model.bidirectional"] else "uni")
    if key not in ran:
      out.append(key)
  return out


def _points_text(points: Sequence[tuple[Any, ...]]) -> str:
  by_task: dict[str, list[str]] = {}
  for task, length, cell, d in points:
    by_task.setdefault(task, []).append(f"{cell} {d} T={length}")
  return "; ".join(f"{task}: {', '.join(v)}" for task, v in by_task.items())


def report_markdown(rows: Sequence[dict[str, Any]], manifest: dict[str, Any], workdir: str,
                    command: str, from_workdirs: bool,
                    images: Sequence[tuple[str, str]] = (), title: str = TITLE,
                    verdicts: Callable[[Sequence[dict[str, Any]]], list[str]] | None = None,
                    csv_name: str = "compare.csv") -> str:
  """The text of the report: header, one table per task, measured vs literature, plots."""
  verdicts = verdicts or literature_verdicts
  t, m = manifest["train"], manifest["model"]
  done = sum(r.get("status") == "finished" for r in rows)
  lines = [f"# {title}", ""]
  commands = manifest.get("commands", [])
  lines.append("- Training command" + ("s (run one after the other into the same workdirs)"
                                       if len(commands) > 1 else "") + ": "
               + "; ".join(f"`{c}`" for c in commands))
  if from_workdirs:
    lines.append(f"- Report rebuilt from the workdirs by: `{command}`")
  lines.append(f"- Date: study started {manifest.get('started', '?')}; report written {_now()}")
  lines.append(f"- Machine: {machine_description()}, shared with other jobs while the study "
               f"ran (load average at report time {os.getloadavg()[0]:.1f}), so wall times are "
               "inflated and only comparable to each other roughly")
  lines.append(
      f"- Budget per point: at most {t['num_steps']} steps (a point stops early once every seed "
      f"is solved), batch {t['batch_size']}, Adam lr {t['learning_rate']}, global-norm clip "
      f"{t['grad_clip']}, hidden {m['hidden_size']} per direction, {m['num_layers']} layer; "
      f"{t['num_seeds']} seeds per point trained as one program (train.num_seeds); evaluation "
      f"on {t['eval_batches']} x {t['eval_batch_size']} held-out examples every "
      f"{t['eval_every']} steps")
  lines.append(f"- Grid run: {_rows_grid_text(rows)}; {done} of {len(rows)} points finished")
  lines.append("- Wall time per point: from summary.json, summed over the sessions of the point "
               "that ended normally (compilation included); a session killed part-way and "
               "resumed is not counted, so such a point's time is an underestimate")
  default = manifest.get("default_grid")
  if default:
    missing = _missing_from_default(rows, default)
    if missing:
      lines.append(f"- **A declared subset of the default grid** ({_grid_text(default)}, "
                   f"{len(missing) + len(rows)} points): {len(missing)} points not run "
                   f"({_points_text(missing)})")
  lines.append(f"- Workdirs: `{workdir}` (one per point; `{csv_name}` has every number)")
  lines.append("")
  for task in dict.fromkeys(r["task"] for r in rows):
    lines += _task_section(task, [r for r in rows if r["task"] == task])
  lines += ["## Measured vs the literature", ""]
  lines += [f"- {s}" for s in verdicts(rows)]
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
# problem as here), shown beside the measured rows. Bai, Kolter & Koltun 2018, Table 1.
LITERATURE = {
    ("copy", 1000, "lstm"): "loss 0.0204 (Bai et al. 2018; = baseline)",
    ("copy", 1000, "gru"): "loss 0.0197 (Bai et al. 2018)",
    ("copy", 1000, "vanilla"): "loss 0.0202 (Bai et al. 2018)",
    ("copy", 200, "lstm"): "at the baseline from T=200 (Arjovsky et al. 2016)",
    ("copy", 500, "lstm"): "at the baseline from T=200 (Arjovsky et al. 2016)",
    ("adding", 600, "lstm"): "MSE 0.164 (Bai et al. 2018)",
    ("adding", 600, "gru"): "MSE 5.3e-5 (Bai et al. 2018)",
    ("adding", 600, "vanilla"): "MSE 0.177 (Bai et al. 2018)",
}


def _literature(row: dict[str, Any]) -> str:
  return LITERATURE.get((row["task"], row["length"], row["cell"]), "")


_DEFAULT_THRESHOLD = {"copy": 0.99, "adding": 0.01}


def _task_section(task: str, rows: Sequence[dict[str, Any]]) -> list[str]:
  text, metric = _TASK_TEXT.get(task, (f"Task {task}.", "metric"))
  thresholds = sorted({r["threshold"] for r in rows if r.get("threshold") is not None})
  text = text.format(threshold=" / ".join(f"{t:g}" for t in thresholds)
                     or _DEFAULT_THRESHOLD.get(task, "?"))
  columns = ["cell", "direction", "length", "value", "loss_mean", "baseline", "solved",
             "steps", "wall_time_sec"]
  headers = ["cell", "direction", "T", f"final {metric} (mean ± sd)", "final loss",
             "chance baseline", "steps to solve", "steps run", "wall time (s)"]
  if any(_literature(r) for r in rows):
    columns.append("literature")
    headers.append("literature (same task)")
  table = report.markdown_table(rows, columns, headers, formatters={
      "value": lambda r: (report.mean_sd(r.get("metric_mean"), r.get("metric_sd"))
                          if r.get("status") not in ("not run", "diverged", "partial")
                          else "unfinished (stopped part-way)" if r["status"] == "partial"
                          else r["status"]),
      "baseline": lambda r: ("-" if r.get("baseline") is None
                             else f"{report.format_value(r['baseline'], 3)} ({r['baseline_of']})"),
      "solved": sweep.steps_to_solve_text,
      "wall_time_sec": lambda r: ("-" if r.get("wall_time_sec") is None
                                  else f"{r['wall_time_sec']:.0f}"),
      "literature": lambda r: _literature(r) or "-",
  })
  return [f"## {task}", "", text, "", table]


def _find(rows: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
  return [r for r in rows if all(r.get(k) == v for k, v in match.items())
          and r.get("metric_mean") is not None]


def _trend(row: dict[str, Any]) -> str:
  """" (0.21 at half the budget)" for an unsolved run, to show if it was still improving."""
  half = row.get("metric_at_half")
  if half is None or row.get("solved_seeds") == row.get("num_seeds"):
    return ""
  return f" ({half:.3g} at step ~{row['steps'] // 2})"


def literature_verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
  """What was measured against what the literature leads one to expect, one sentence each."""
  out = []
  copy_rows = _find(rows, task="copy")
  # 1. A tanh RNN stalls at the copy baseline for long delays (Arjovsky et al. 2016, fig. 1).
  long_vanilla = [r for r in copy_rows if r["cell"] == "vanilla" and r["length"] >= 100]
  if long_vanilla:
    stalled = [r for r in long_vanilla if r["metric_mean"] < 0.25
               and r["loss_mean"] is not None and r["loss_mean"] > 0.9 * r["baseline"]]
    desc = "; ".join(f"{r['direction']} T={r['length']}: accuracy {r['metric_mean']:.3f}, loss "
                     f"{r['loss_mean']:.4f} vs baseline {r['baseline']:.4f}" for r in long_vanilla)
    verdict = ("**agrees**" if len(stalled) == len(long_vanilla) else
               "**partly agrees**" if stalled else "**disagrees**")
    out.append(f"Expected: the vanilla tanh RNN stalls at the copy baseline for long delays. "
               f"Measured ({desc}): {verdict}.")
  # 2. LSTM/GRU solve short and medium delays.
  gated = [r for r in copy_rows if r["cell"] in ("lstm", "gru")]
  if gated:
    lengths = sorted({r["length"] for r in gated})
    short = [r for r in gated if r["length"] in lengths[:2]]
    solved = [r for r in short if r["solved_seeds"] == r["num_seeds"]]
    desc = "; ".join(f"{r['cell']} {r['direction']} T={r['length']}: "
                     f"{sweep.steps_to_solve_text(r)}, accuracy {r['metric_mean']:.3f}"
                     + _trend(r) for r in short)
    verdict = ("**agrees**" if len(solved) == len(short) else
               "**partly agrees**" if solved else "**disagrees** within this budget")
    longer = [r for r in gated if r["length"] not in lengths[:2]]
    tail = ""
    if longer:
      best = max(longer, key=lambda r: r["metric_mean"])
      tail = (f" At longer delays the best gated run reaches recall accuracy "
              f"{best['metric_mean']:.3f} ({best['cell']} {best['direction']} T={best['length']}).")
    out.append(f"Expected: LSTM and GRU solve short/medium copy delays "
               f"(T in {{{', '.join(map(str, lengths[:2]))}}} here). Measured ({desc}): "
               f"{verdict}.{tail}")
  add_rows = _find(rows, task="adding")
  gated = [r for r in add_rows if r["cell"] in ("lstm", "gru")]
  if gated:
    moderate = [r for r in gated if r["length"] <= 200]
    good = [r for r in moderate if r["metric_mean"] < 0.01]
    desc = "; ".join(f"{r['cell']} {r['direction']} T={r['length']}: MSE {r['metric_mean']:.4f}"
                     + ("" if r["metric_mean"] < 0.01 else _trend(r)) for r in moderate)
    verdict = ("**agrees**" if moderate and len(good) == len(moderate) else
               "**partly agrees**" if good else "**disagrees** within this budget")
    out.append(f"Expected: on the adding problem LSTM and GRU reach MSE < 0.01 for moderate T "
               f"(<= 200 here). Measured ({desc}): {verdict}.")
  vanilla_add = [r for r in add_rows if r["cell"] == "vanilla"]
  if vanilla_add:
    longest = max(r["length"] for r in vanilla_add)
    at = [r for r in vanilla_add if r["length"] == longest]
    near = [r for r in at if r["metric_mean"] > 0.5 * r["baseline"]]
    desc = "; ".join(f"{r['direction']}: MSE {r['metric_mean']:.4f}" for r in at)
    out.append(f"Expected: the vanilla RNN stays near the adding baseline (0.167) at long T. "
               f"Measured at T={longest} ({desc}): "
               f"{'**agrees**' if len(near) == len(at) else '**disagrees**'}.")
  pairs = []
  for r in rows:
    if r.get("direction") == "bi" and r.get("metric_mean") is not None:
      uni = _find(rows, task=r["task"], length=r["length"], cell=r["cell"], direction="uni")
      if uni:
        pairs.append((r, uni[0]))
  if pairs:
    better = sum((b["metric_mean"] > u["metric_mean"]) == (b["metric"] == "accuracy")
                 and abs(b["metric_mean"] - u["metric_mean"]) > 1e-3 for b, u in pairs)
    desc = "; ".join(f"{b['task']} {b['cell']} T={b['length']}: {u['metric_mean']:.3g} -> "
                     f"{b['metric_mean']:.3g}" for b, u in pairs)
    out.append(f"Bidirectional vs unidirectional (same cell, task and T; {desc}): the "
               f"bidirectional run is better in {better} of {len(pairs)} pairs. Neither task "
               "can be answered by reading backwards (on copy the backward direction has seen "
               "only blanks at a recall step), so a gain has to come from side cues: the backward "
               "direction knows how far each step is from the end (which recall slot it is), "
               "the readout sees twice the features, and on adding the backward state read at "
               "step 0 has a shorter path to the first marker.")
  if not out:
    out.append("No finished points yet: nothing to compare.")
  return out


def _beats_baseline(row: dict[str, Any]) -> bool:
  """Clearly below the chance baseline: loss under 90% of it (copy) / MSE under half (adding)."""
  if row.get("loss_mean") is None or not row.get("baseline"):
    return False
  return row["loss_mean"] < (0.9 if row["task"] == "copy" else 0.5) * row["baseline"]


def _solved(row: dict[str, Any]) -> bool:
  return bool(row.get("num_seeds")) and row.get("solved_seeds") == row.get("num_seeds")


def _value_text(row: dict[str, Any]) -> str:
  name = "accuracy" if row["task"] == "copy" else "MSE"
  return (f"{row['cell']} T={row['length']}: {name} {row['metric_mean']:.3g}, loss "
          f"{row['loss_mean']:.3g} vs baseline {row['baseline']:.3g}"
          + (f", {sweep.steps_to_solve_text(row)}" if _solved(row) else ""))


def horizon_verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
  """The long-delay study read against the literature, one sentence each."""
  out = []
  done = [r for r in rows if r.get("metric_mean") is not None and r.get("loss_mean") is not None]
  for task in dict.fromkeys(r["task"] for r in done):
    here = [r for r in done if r["task"] == task]
    for length in sorted({r["length"] for r in here}):
      at = [r for r in here if r["length"] == length]
      solved = [r["cell"] for r in at if _solved(r)]
      below = [r["cell"] for r in at if _beats_baseline(r) and not _solved(r)]
      at_base = [r["cell"] for r in at if not _beats_baseline(r) and not _solved(r)]
      out.append(f"{task} T={length}: solved by {', '.join(solved) or 'none'}; clearly below "
                 f"the chance baseline but not solved: {', '.join(below) or 'none'}; at the "
                 f"baseline: {', '.join(at_base) or 'none'}.")
  diverged = [r for r in rows if r.get("status") == "diverged"]
  if diverged:
    out.append("Diverged (loss became NaN/inf, training stopped; recorded, not retried): "
               + "; ".join(f"{r['cell']} {r['task']} T={r['length']} at step {r['diverged_at']}"
                           for r in diverged) + ".")
  for (task, length, cell), text in LITERATURE.items():
    mine = [r for r in done if (r["task"], r["length"], r["cell"]) == (task, length, cell)]
    if mine:
      r = mine[0]
      beat = _solved(r) or _beats_baseline(r)
      out.append(f"Literature {cell} on {task} T={length}: {text}. Measured: {_value_text(r)}: "
                 + ("**beats the chance baseline**" if beat else "**at the chance baseline**")
                 + ".")
  pairs = []
  for r in done:
    if r["cell"].endswith(":chrono"):
      std = _find(done, task=r["task"], length=r["length"], direction=r["direction"],
                  cell=r["cell"].split(":")[0])
      if std:
        pairs.append((std[0], r))
  if pairs:
    better = sum(c["loss_mean"] < s["loss_mean"] for s, c in pairs)
    desc = "; ".join(f"{s['cell']} {s['task']} T={s['length']}: loss {s['loss_mean']:.3g} -> "
                     f"{c['loss_mean']:.3g}" for s, c in pairs)
    moved = [(s, c) for s, c in pairs if _beats_baseline(s) or _beats_baseline(c)
             or _solved(s) or _solved(c)]
    moved_better = sum(c["loss_mean"] < s["loss_mean"] for s, c in moved)
    out.append(f"Chrono vs standard initialisation (same cell, task and T; {desc}): chrono has "
               f"the lower final loss in {better} of {len(pairs)} pairs; in the {len(moved)} "
               f"pairs where either run left the chance baseline, in {moved_better}.")
  cells = list(dict.fromkeys(r["cell"] for r in done))
  if cells:
    parts = []
    for cell in cells:
      mine = [r for r in done if r["cell"] == cell]
      longest = {t: max((r["length"] for r in mine if r["task"] == t and _solved(r)), default=None)
                 for t in dict.fromkeys(r["task"] for r in mine)}
      wall = sum(r.get("wall_time_sec") or 0.0 for r in mine)
      ms_per_step = [1000 * r["wall_time_sec"] / (r["steps"] * r["length"])
                     for r in mine if r.get("wall_time_sec") and r.get("steps")]
      solved_text = ", ".join(f"{t} T={v}" if v else f"{t} none" for t, v in longest.items())
      best = {t: min((r["loss_mean"] / r["baseline"] for r in mine if r["task"] == t
                      and r.get("baseline")), default=None)
              for t in dict.fromkeys(r["task"] for r in mine)}
      best_text = ", ".join(f"{t} {v:.2f}" for t, v in best.items() if v is not None)
      parts.append(f"{cell}: longest solved {solved_text}; lowest loss/baseline {best_text}; "
                   f"{wall:.0f} s in all"
                   + (f", {min(ms_per_step):.2f} ms per step per time step" if ms_per_step else ""))
    out.append("Memory per unit of wall time, per cell (longest T solved; the lowest final loss "
               "as a fraction of the chance baseline, per task; wall time summed over its "
               "points, and wall ms per training step per time step, compilation and "
               "evaluation included): " + "; ".join(parts) + ".")
  if not out:
    out.append("No finished points yet: nothing to compare.")
  return out


VERDICTS = {"compare": literature_verdicts, "horizon": horizon_verdicts}


# ----------------------------------------------------------------------------- seeds speed-up

def _time_steps(config: ml_collections.ConfigDict, steps: int) -> tuple[float, float]:
  """(compile + first step seconds, seconds per step after that) of Trainer.train_step."""
  import jax

  from rnnlab.training import train

  trainer = train.Trainer(config)
  start = time.perf_counter()
  state = trainer.init()
  state, metrics = trainer.train_step(state)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  state, metrics = trainer.train_step(state)  # one more warm step
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = trainer.train_step(state)
  jax.block_until_ready((state, metrics))
  return compile_s, (time.perf_counter() - start) / steps


def _matmul_probe(batch: int, hidden: int, num_seeds: int, repeats: int = 5
                  ) -> tuple[float, float]:
  """Seconds for S separate [batch, H] x [H, 4H] matmuls and for one vmapped [S, ...] matmul:
  whether the batched matrix product itself explains a (lack of) speed-up."""
  import jax
  import jax.numpy as jnp
  key = jax.random.PRNGKey(0)
  from rnnlab.core import cells
  gates = cells.get("lstm").num_gates
  a = jax.random.normal(key, (batch, hidden))
  w = jax.random.normal(key, (hidden, gates * hidden))
  a_s = jnp.broadcast_to(a, (num_seeds, batch, hidden))
  w_s = jnp.broadcast_to(w, (num_seeds, hidden, gates * hidden))
  one = jax.jit(lambda x, y: jnp.tanh(x @ y))
  many = jax.jit(jax.vmap(lambda x, y: jnp.tanh(x @ y)))
  jax.block_until_ready((one(a, w), many(a_s, w_s)))
  single, batched = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(num_seeds):
      out = one(a, w)
    jax.block_until_ready(out)
    single.append(time.perf_counter() - start)
    start = time.perf_counter()
    jax.block_until_ready(many(a_s, w_s))
    batched.append(time.perf_counter() - start)
  return min(single), min(batched)


def measure_seeds_speedup(config: ml_collections.ConfigDict, num_seeds: int,
                          hidden_sizes: Sequence[int], steps: int, repeats: int = 3
                          ) -> list[dict[str, Any]]:
  """Times `num_seeds` seeds in one program against one seed, per hidden size.

  S sequential runs take S x (time per one-seed step); one program takes the S-seed step time.
  Repeats alternate the two and keep the fastest (the least disturbed by other jobs).

  Returns:
    One dict per hidden size: seconds per step for 1 and S seeds, compile seconds, speed-up.
  """
  out = []
  for hidden in hidden_sizes:
    one_s, many_s, compile_one, compile_many = [], [], [], []
    for _ in range(repeats):
      for seeds, times, compiles in ((1, one_s, compile_one), (num_seeds, many_s, compile_many)):
        c = copy.deepcopy(config)
        c.model.hidden_size = hidden
        c.train.num_seeds = seeds
        compile_s, per_step = _time_steps(c, steps)
        times.append(per_step)
        compiles.append(compile_s)
    t1, ts = min(one_s), min(many_s)
    mm_single, mm_batched = _matmul_probe(config.train.batch_size, hidden, num_seeds)
    out.append({"hidden": hidden, "num_seeds": num_seeds, "sec_per_step_1": t1,
                "matmul_sec_single": mm_single, "matmul_sec_batched": mm_batched,
                "sec_per_step_s": ts, "compile_sec_1": min(compile_one),
                "compile_sec_s": min(compile_many), "speedup": num_seeds * t1 / ts,
                "all_sec_per_step_1": one_s, "all_sec_per_step_s": many_s})
  return out


def seeds_speedup_markdown(results: Sequence[dict[str, Any]], config: ml_collections.ConfigDict,
                           command: str, steps: int, repeats: int) -> str:
  """The text of seeds_speedup.md."""
  t = config.train
  s = results[0]["num_seeds"] if results else "S"
  lines = [
      f"# Seeds in one program: train.num_seeds={s} vs {s} sequential runs", "",
      f"- Command: `{command}`",
      f"- Date: {_now()}",
      f"- Machine: {machine_description()}, shared with other jobs (load average "
      f"{os.getloadavg()[0]:.1f} when written); each timing is the fastest of {repeats} "
      "alternating repeats",
      f"- Task {config.task.name} T={config.task.length}, cell {config.model.cell}, batch "
      f"{t.batch_size} per seed; {steps} timed `Trainer.train_step` calls after compilation and "
      "one warm step",
      f"- Speed-up = {s} x (seconds per 1-seed step) / (seconds per {s}-seed step): the time of "
      f"{s} sequential runs over the time of one {s}-seed run, compilation excluded (sequential "
      f"runs would also compile {s} times)",
      "",
  ]
  rows = [dict(r, ms_1=1000 * r["sec_per_step_1"], ms_s=1000 * r["sec_per_step_s"],
               seq_ms=1000 * s * r["sec_per_step_1"]) for r in results]
  lines.append(report.markdown_table(
      rows, ["hidden", "ms_1", "seq_ms", "ms_s", "speedup", "compile_sec_1", "compile_sec_s"],
      ["hidden", "ms/step, 1 seed", f"ms for {s} sequential steps", f"ms/step, {s} seeds in one "
       "program", "speed-up", "compile s (1 seed)", f"compile s ({s} seeds)"]))
  lines.append("")
  lines.append("Reading:")
  lines.append("")
  for r in results:
    ratio = r["speedup"]
    verdict = (f"{ratio:.2f}x faster than" if ratio > 1.05 else
               f"{1 / ratio:.2f}x slower than" if ratio < 0.95 else "as fast as")
    line = (f"- hidden {r['hidden']}: {s} seeds in one program are {verdict} {s} sequential "
            f"runs (every repeat, ms/step: 1 seed "
            f"{[round(1000 * x, 1) for x in r['all_sec_per_step_1']]}, {s} seeds "
            f"{[round(1000 * x, 1) for x in r['all_sec_per_step_s']]}).")
    if "matmul_sec_single" in r:
      line += (f" A bare [batch, H] x [H, 4H] matmul: {s} separate ones "
               f"{1000 * r['matmul_sec_single']:.2f} ms, one vmapped over {s} seeds "
               f"{1000 * r['matmul_sec_batched']:.2f} ms.")
    lines.append(line)
  probes = [r["matmul_sec_batched"] / r["matmul_sec_single"] for r in results
            if "matmul_sec_single" in r]
  if probes and all(0.5 < p < 2.0 for p in probes):
    where = ("where it is slower, the cost is elsewhere in the compiled step (the bare batched "
             "matmul costs about as much as the separate ones), which was not profiled further")
  elif probes:
    where = ("the bare batched matmul itself costs "
             f"{', '.join(f'{p:.1f}x' for p in probes)} the separate ones")
  else:
    where = "no matmul probe was run"
  lines += [
      "",
      "On a CPU with 2 cores there is no idle hardware for the extra seeds to fill: a 1-seed "
      "step already keeps the cores busy, so one program can at best save per-step overheads "
      f"(dispatch, the scan loop); {where}. The case for train.num_seeds is an accelerator, "
      "where one small model leaves most of the device idle; this machine has none, so that "
      "is not measured here.",
      ""]
  return "\n".join(lines)

