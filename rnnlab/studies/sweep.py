"""Hyperparameter sweeps: config overrides -> points, one workdir each; run, shard, skip, merge.

A sweep is a list of points. A point is a set of config overrides, a name made from them and a
workdir `base_workdir/name` in which it is an ordinary training run (`train.train_and_evaluate`),
so every point is resumable on its own and any scheduler can run the points in parallel:

    points = sweep.make_points(config, sweep.parse_spec("model.cell=lstm,gru", config), base)
    sweep.run_points(sweep.shard(points, num_shards, shard_index))   # or any launcher
    rows = sweep.collect(points); sweep.write_table(rows, base, axes)

Spec syntax (the --sweep flag): `key=v1,v2;key2=v3,v4` -> the Cartesian product, the first key
varying slowest. Values take the type of the config key (int, float, bool, str). A config file
may instead define `get_sweep()` returning {key: [values]} (a product) or [{key: value}, ...]
(an explicit list of points).

Launching is pluggable: `run_points(points, run=...)` takes any function of one `Point`; a
Slurm/submitit launcher submits `run_point(point)` per point (each is independent) and calls
`merge(base_workdir)` at the end.

Files under base_workdir: sweep.json (the points: names and overrides), one workdir per point,
sweep.md and sweep.csv (one row per point, built only from the point workdirs' files).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
from typing import Any, Callable, Iterable, Sequence

import ml_collections
import numpy as np

from rnnlab.errors import ConfigError, NonFiniteError, RnnlabError
from rnnlab.studies import report
from rnnlab.training import config_check, metrics_log, run_folder

MANIFEST_FILE = "sweep.json"
TABLE_MD = "sweep.md"
TABLE_CSV = "sweep.csv"
SUMMARY_FILE = run_folder.SUMMARY_FILE
CONFIG_FILE = run_folder.CONFIG_FILE
DIVERGED_FILE = "diverged.json"  # a point whose loss became non-finite: step and message

Overrides = tuple[tuple[str, Any], ...]

# Short names of common keys, for point names ("cell=lstm,lr=0.001").
_SHORT_NAMES = {
    "model.cell": "cell", "train.learning_rate": "lr", "model.hidden_size": "hidden",
    "model.num_layers": "layers", "model.bidirectional": "bidir", "train.batch_size": "batch",
    "train.num_steps": "steps", "task.name": "task", "task.length": "T",
    "model.recurrent_scale": "scale", "train.grad_clip": "clip", "model.dropout_rate": "dropout",
}


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of a sweep.

  Attributes:
    name: directory name made from the overrides, e.g. "cell=lstm,lr=0.001".
    overrides: ((config key, value), ...) applied to the base config, in sweep-axis order.
    workdir: base_workdir/name.
    config: the resolved config of this run (base config + overrides), validated.
  """

  name: str
  overrides: Overrides
  workdir: str
  config: ml_collections.ConfigDict = dataclasses.field(compare=False, repr=False)


# ----------------------------------------------------------------------------- parsing

def _node_and_type(config: ml_collections.ConfigDict, key: str) -> type | None:
  """The type of config key `key` ("a.b.c"); ConfigError if there is no such key."""
  parts = key.split(".")
  node = config
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      where = ".".join(parts[:i]) or "the top level"
      known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      raise ConfigError(f"unknown config key '{key}' in the sweep: {where} has no '{part}'"
                        + (f" (it has: {', '.join(known)})" if known else ""))
    if i < len(parts) - 1:
      node = node[part]
  value = node[parts[-1]]
  if isinstance(value, ml_collections.ConfigDict):
    raise ConfigError(f"config key '{key}' is a section, not a value: sweep one of its keys "
                      f"({', '.join(sorted(value.keys()))})")
  kind = node.get_type(parts[-1])
  return None if kind is type(None) else kind


_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def coerce(key: str, value: Any, kind: type | None) -> Any:
  """`value` (a string from the command line, or a Python value) as the type `kind` of `key`."""
  def bad(expected: str) -> ConfigError:
    return ConfigError(f"bad value {value!r} for '{key}' in the sweep: expected {expected}")

  if kind is bool:
    if isinstance(value, bool):
      return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
      return value.strip().lower() in _TRUE
    raise bad("a bool (true/false)")
  if kind is int:
    if isinstance(value, bool):
      raise bad("an int")
    if isinstance(value, int):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)
    if isinstance(value, str):
      for conv in (int, float):  # "100", or "1e3"
        try:
          number = conv(value.strip())
        except ValueError:
          continue
        if float(number).is_integer():
          return int(number)
    raise bad("an int")
  if kind is float:
    if isinstance(value, bool):
      raise bad("a float")
    if isinstance(value, (int, float)):
      return float(value)
    try:
      return float(value)
    except (TypeError, ValueError):
      raise bad("a float") from None
  if kind is str:
    if not isinstance(value, str):
      raise bad("a string")
    return value.strip()
  if kind is None:  # a key whose default is None with no declared type: best guess
    if not isinstance(value, str):
      return value
    text = value.strip()
    if text.lower() in _TRUE - {"1"} | _FALSE - {"0"}:
      return text.lower() in _TRUE
    for conv in (int, float):
      try:
        return conv(text)
      except ValueError:
        pass
    return text
  raise ConfigError(f"config key '{key}' has type {kind.__name__}, which a sweep cannot set "
                    "(int, float, bool and str keys can be swept)")


def parse_spec(spec: str, config: ml_collections.ConfigDict) -> list[tuple[str, list[Any]]]:
  """'model.cell=vanilla,lstm;train.learning_rate=1e-3' -> [(key, [typed values]), ...].

  Raises:
    ConfigError: a syntax error, an unknown key or a value of the wrong type, naming it.
  """
  syntax = "syntax: key=v1,v2;key2=v3 (e.g. 'model.cell=lstm,gru;train.learning_rate=1e-3')"
  if not spec or not spec.strip():
    raise ConfigError(f"empty sweep; {syntax}")
  axes: list[tuple[str, list[Any]]] = []
  for part in spec.split(";"):
    part = part.strip()
    if not part:
      continue  # a trailing ';'
    if "=" not in part:
      raise ConfigError(f"bad sweep term {part!r}: no '='; {syntax}")
    key, _, values_text = part.partition("=")
    key = key.strip()
    if not key or any(c.isspace() for c in key):
      raise ConfigError(f"bad sweep term {part!r}: the key is empty or has spaces; {syntax}")
    values = [v.strip() for v in values_text.split(",")]
    if not values_text.strip() or any(v == "" for v in values):
      raise ConfigError(f"bad sweep term {part!r}: an empty value; {syntax}")
    axes.append((key, values))
  if not axes:
    raise ConfigError(f"empty sweep; {syntax}")
  return typed_axes(axes, config)


def typed_axes(axes: Iterable[tuple[str, Sequence[Any]]], config: ml_collections.ConfigDict
               ) -> list[tuple[str, list[Any]]]:
  """Checks the keys of `axes` and converts their values to the keys' types."""
  out, seen = [], set()
  for key, values in axes:
    if key in seen:
      raise ConfigError(f"config key '{key}' appears twice in the sweep")
    seen.add(key)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
      raise ConfigError(f"the sweep values of '{key}' must be a non-empty list, got {values!r}")
    kind = _node_and_type(config, key)
    typed = [coerce(key, v, kind) for v in values]
    if len(set(map(repr, typed))) != len(typed):
      raise ConfigError(f"the sweep values of '{key}' repeat: {typed}")
    out.append((key, typed))
  return out


def product(axes: Sequence[tuple[str, Sequence[Any]]]) -> list[Overrides]:
  """The Cartesian product of the axes, the first axis varying slowest."""
  keys = [k for k, _ in axes]
  return [tuple(zip(keys, combo)) for combo in itertools.product(*(v for _, v in axes))]


def from_sweep_object(obj: Any, config: ml_collections.ConfigDict) -> list[Overrides]:
  """The overrides of a config file's `get_sweep()`: {key: [values]} (product) or a list of
  {key: value} dicts (explicit points)."""
  if isinstance(obj, dict):
    return product(typed_axes(obj.items(), config))
  if isinstance(obj, (list, tuple)) and obj and all(isinstance(p, dict) for p in obj):
    out = []
    for p in obj:
      if not p:
        raise ConfigError("get_sweep() returned an empty point {}")
      axes = typed_axes([(k, [v]) for k, v in p.items()], config)
      out.append(tuple((k, v[0]) for k, v in axes))
    return out
  raise ConfigError("get_sweep() must return {key: [values, ...]} or a non-empty list of "
                    f"{{key: value}} dicts, got {type(obj).__name__}")


# ----------------------------------------------------------------------------- points

def _short(key: str, keys: Sequence[str]) -> str:
  name = _SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])
  clashes = [k for k in keys if _SHORT_NAMES.get(k, k.rsplit(".", 1)[-1]) == name]
  return name if len(clashes) == 1 else key


def _format(value: Any) -> str:
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return repr(value)
  return str(value)


def point_name(overrides: Overrides, all_keys: Sequence[str] | None = None) -> str:
  """"cell=lstm,lr=0.001": short key names (full ones when two would clash), safe for a path."""
  keys = list(all_keys) if all_keys is not None else [k for k, _ in overrides]
  name = ",".join(f"{_short(k, keys)}={_format(v)}" for k, v in overrides)
  return name.replace(os.sep, "_").replace("\0", "_") or "default"


def apply_overrides(config: ml_collections.ConfigDict, overrides: Overrides
                    ) -> ml_collections.ConfigDict:
  """A copy of `config` with the overrides set (the original is not changed)."""
  out = copy.deepcopy(config)
  for key, value in overrides:
    *path, last = key.split(".")
    node = out
    for part in path:
      node = node[part]
    try:
      node[last] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f"cannot set '{key}' to {value!r}: {e}") from None
  return out


def make_points(config: ml_collections.ConfigDict, overrides_list: Sequence[Overrides],
                base_workdir: str, names: Sequence[str] | None = None) -> list[Point]:
  """One validated Point per overrides (ConfigError naming the point if a config is invalid)."""
  all_keys = list(dict.fromkeys(k for ov in overrides_list for k, _ in ov))
  points = []
  for i, overrides in enumerate(overrides_list):
    name = names[i] if names is not None else point_name(overrides, all_keys)
    resolved = apply_overrides(config, overrides)
    try:
      config_check.validate(resolved)
    except ConfigError as e:
      raise ConfigError(f"sweep point {name!r}: {e}") from None
    points.append(Point(name, tuple(overrides), os.path.join(base_workdir, name), resolved))
  duplicates = sorted({p.name for p in points if [q.name for q in points].count(p.name) > 1})
  if duplicates:
    raise ConfigError(f"two sweep points have the same name {duplicates[0]!r}; sweep distinct "
                      "values")
  return points


def shard(points: Sequence[Point], num_shards: int, shard_index: int) -> list[Point]:
  """Every `num_shards`-th point starting at `shard_index` (shards are disjoint and cover all)."""
  if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
    raise ConfigError(f"--num_shards must be an integer >= 1, got {num_shards!r}")
  if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
    raise ConfigError(f"--shard_index must be in [0, {num_shards}), got {shard_index!r}")
  return list(points[shard_index::num_shards])


# ----------------------------------------------------------------------------- running

def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def status(point: Point) -> str:
  """"finished" (summary.json says the budget was used or every seed solved), "diverged" (its
  loss became non-finite: a result, not retried, since a rerun would repeat it exactly),
  "partial" (a run was started: it will resume from its latest checkpoint), or "new"."""
  if os.path.exists(os.path.join(point.workdir, DIVERGED_FILE)):
    return "diverged"
  summary = _read_json(os.path.join(point.workdir, SUMMARY_FILE))
  t = point.config.get("train")
  if summary is not None and t is not None and (
      summary.get("steps", 0) >= t.num_steps or (summary.get("solved") and t.stop_when_solved)):
    return "finished"
  if os.path.exists(os.path.join(point.workdir, CONFIG_FILE)):
    return "partial"
  return "new"


def run_point(point: Point) -> dict[str, Any] | None:
  """Trains one point in its workdir unless finished or diverged (resuming a partial one).

  A point whose loss becomes non-finite is recorded in its workdir (diverged.json: the step and
  the message) and the sweep goes on to the next point: divergence is one of the results a
  sweep measures. Returns the run's summary, or None when it was skipped or diverged.
  """
  from absl import logging

  from rnnlab.training import train  # local: keeps parsing and merging free of model imports

  state = status(point)
  if state in ("finished", "diverged"):
    # Same saved config? (A finished run of another config must not be reported as this one.)
    train.prepare_workdir(point.config, point.workdir, write=False)
    logging.info("sweep: %s is %s, skipped", point.name, state)
    return None
  logging.info("sweep: running %s in %s", point.name, point.workdir)
  try:
    return train.train_and_evaluate(point.config, point.workdir)
  except NonFiniteError as e:
    logging.warning("sweep: %s diverged: %s", point.name, e)
    run_folder.atomic_write(os.path.join(point.workdir, DIVERGED_FILE),
                      json.dumps({"step": e.step, "message": str(e)}, indent=2) + "\n")
    return None


def run_points(points: Sequence[Point],
               run: Callable[[Point], Any] = run_point) -> list[Any]:
  """Runs the points one after another with `run` (the local launcher); returns its results."""
  return [run(p) for p in points]


# ----------------------------------------------------------------------------- manifest

def write_manifest(base_workdir: str, points: Sequence[Point], axes: Sequence[str],
                   extra: dict[str, Any] | None = None) -> None:
  """sweep.json: the points (name, overrides) and the axes, so `merge` can rebuild the table."""
  data = {"axes": list(axes),
          "points": [{"name": p.name, "overrides": [[k, v] for k, v in p.overrides]}
                     for p in points]}
  data.update(extra or {})
  run_folder.atomic_write(os.path.join(base_workdir, MANIFEST_FILE), json.dumps(data, indent=2) + "\n")


def read_manifest(base_workdir: str) -> dict[str, Any]:
  path = os.path.join(base_workdir, MANIFEST_FILE)
  data = _read_json(path)
  if data is None:
    raise RnnlabError(f"{path} is missing or unreadable: {base_workdir!r} holds no sweep "
                      "(run experiments.sweep with --sweep first)")
  return data


def load_points(base_workdir: str) -> list[Point]:
  """The points listed in base_workdir/sweep.json, each with the config its run saved (or an
  empty config when the point has not started)."""
  from rnnlab.training import train

  points = []
  for entry in read_manifest(base_workdir)["points"]:
    workdir = os.path.join(base_workdir, entry["name"])
    has_config = os.path.exists(os.path.join(workdir, CONFIG_FILE))
    config = train.load_config(workdir) if has_config else ml_collections.ConfigDict()
    points.append(Point(entry["name"], tuple((k, v) for k, v in entry["overrides"]), workdir,
                        config))
  return points


# ----------------------------------------------------------------------------- results

def _per_seed(summary: dict[str, Any], metric: str) -> list[float]:
  final = summary.get("final", {})
  per_seed = final.get("eval_per_seed", {}).get(metric)
  if per_seed is not None:
    return [float(v) for v in per_seed]
  value = final.get(f"eval_{metric}")
  return [] if value is None else [float(value)]


def point_row(point: Point) -> dict[str, Any]:
  """One table row from a point's workdir files (summary.json, config.json, metrics.jsonl)."""
  row: dict[str, Any] = {"name": point.name}
  row.update({k: v for k, v in point.overrides})
  diverged = _read_json(os.path.join(point.workdir, DIVERGED_FILE))
  if diverged is not None:
    row.update(status="diverged", steps=diverged.get("step"), diverged_at=diverged.get("step"))
    return row
  summary = _read_json(os.path.join(point.workdir, SUMMARY_FILE))
  if summary is None:
    rows = metrics_log.read(point.workdir)
    row.update(status="partial" if rows or os.path.exists(
        os.path.join(point.workdir, CONFIG_FILE)) else "not run",
               steps=max((r["step"] for r in rows), default=0))
    return row
  metric = summary["metric"]
  values = _per_seed(summary, metric)
  losses = _per_seed(summary, "loss")
  solved_at = summary.get("steps_to_solve", -1)
  solved_at = solved_at if isinstance(solved_at, list) else [solved_at]
  solved = [s for s in solved_at if s is not None and s >= 0]
  row.update(
      status=status(point),
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
  )
  return row


def collect(points: Sequence[Point]) -> list[dict[str, Any]]:
  """The table rows of all points, in point order."""
  return [point_row(p) for p in points]


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
                 "steps_to_solve_mean", "steps_to_solve", "wall_time_sec"]


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


# ----------------------------------------------------------------------------- the whole sweep

def run_sweep(config: ml_collections.ConfigDict, overrides_list: Sequence[Overrides],
              base_workdir: str, num_shards: int = 1, shard_index: int = 0,
              run: Callable[[Point], Any] = run_point) -> list[dict[str, Any]]:
  """Makes and validates every point (before any training), runs this shard's points, and
  writes the table of the whole sweep (points of other shards show their current status)."""
  points = make_points(config, overrides_list, base_workdir)
  mine = shard(points, num_shards, shard_index)
  axes = list(dict.fromkeys(k for ov in overrides_list for k, _ in ov))
  os.makedirs(base_workdir, exist_ok=True)
  write_manifest(base_workdir, points, axes)
  run_points(mine, run)
  return merge(base_workdir)


def merge(base_workdir: str) -> list[dict[str, Any]]:
  """Rebuilds sweep.md/sweep.csv from the point workdirs listed in sweep.json (no training)."""
  manifest = read_manifest(base_workdir)
  rows = collect(load_points(base_workdir))
  write_table(rows, base_workdir, manifest["axes"])
  return rows
