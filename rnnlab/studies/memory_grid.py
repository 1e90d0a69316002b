"""The memory study's grid: (task, length, cell, direction) points as sweep overrides.

The grid lives in `config.compare` (configs/compare.py); the rest of the config is every point's
training config. `config.compare.overrides` gives per-variant settings: a mapping from a task
name or a cell label ("copy", "irnn", "lstm:chrono") to sweep terms ("train.num_steps=8000;
train.optimizer=sgd") applied to every point of that task or cell, so each variant can have the
budget and optimiser it trains with.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import ml_collections

from rnnlab.errors import ConfigError
from rnnlab.studies import sweep, sweep_spec

GRID_AXES = ("task.name", "task.length", "model.cell", "model.bidirectional")
DIRECTIONS = {"uni": False, "bi": True}
INITS = ("standard", "chrono")


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
          "horizon": f"{name}_horizon.png", "horizon_bars": f"{name}_horizon_bars.png",
          "records": f"{name}_runs"}


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
  variants = variant_overrides(config)
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
          label = cell if init == "standard" else f"{cell}:{init}"
          ov += [kv for kv in variants.get(task, ()) + variants.get(label, ())
                 if kv[0] not in dict(ov)]
          out.append(tuple(ov))
  return out


def variant_overrides(config: ml_collections.ConfigDict) -> dict[str, sweep.Overrides]:
  """`config.compare.overrides` ({task or cell label: "key=value;key2=value2"}) as typed
  overrides; a task's come before a cell's, and a key set by the grid itself is not overridden."""
  section = config.compare.get("overrides")
  if not section:
    return {}
  base = point_config(config)
  out = {}
  for variant, spec in section.items():
    axes = sweep_spec.parse_spec(str(spec), base)
    many = [k for k, values in axes if len(values) != 1]
    if many:
      raise ConfigError(f"config.compare.overrides[{variant!r}]: give one value per key, not a "
                        f"list ({', '.join(many)})")
    out[variant] = tuple((k, values[0]) for k, values in axes)
  return out


def point_names(overrides_list: Sequence[sweep.Overrides]) -> list[str]:
  """Each point's name from its grid axes alone (task, length, cell, direction, and an init or
  threshold the cell entry sets), so a variant's budget or optimiser is not part of its path."""
  grid_keys = {*GRID_AXES, "model.init", "model.chrono_t_max", "task.solved_threshold"}
  axes = [tuple(kv for kv in ov if kv[0] in grid_keys) for ov in overrides_list]
  all_keys = list(dict.fromkeys(k for ov in axes for k, _ in ov))
  return [sweep.point_name(ov, all_keys) for ov in axes]


def point_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The training config shared by every point: `config` without its `compare` section."""
  out = copy.deepcopy(config)
  out.unlock()
  if "compare" in out:
    del out["compare"]
  return out


def make_points(config: ml_collections.ConfigDict, workdir: str) -> list[sweep.Point]:
  """The grid's validated points under `workdir` (ConfigError before any training)."""
  if "compare" not in config:
    raise ConfigError("the config has no `compare` section; use configs/compare.py")
  overrides = grid_overrides(config)
  return sweep.make_points(point_config(config), overrides, workdir, names=point_names(overrides))

