"""Validation of a resolved config, once, before anything is compiled.

Every message names the key, the bad value and what is allowed, so a typo on the command line
costs seconds, not a compilation and a crash.
"""

from __future__ import annotations

import math
from typing import Any

from rnnlab import tasks
from rnnlab.core import cells
from rnnlab.errors import ConfigError


def _positive_int(config: Any, key: str) -> None:
  value = _lookup(config, key)
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"config.{key} must be a positive integer, got {value!r}")


def _non_negative(config: Any, key: str) -> None:
  value = _lookup(config, key)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
    raise ConfigError(f"config.{key} must be a number >= 0, got {value!r}")


def _one_of(config: Any, key: str, allowed: list[str]) -> None:
  value = _lookup(config, key)
  if value not in allowed:
    raise ConfigError(f"config.{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _finite(tree: dict[str, Any], prefix: str) -> None:
  """Every float of the config is finite: NaN passes every comparison a range check makes, and
  inf compiles and trains to NaN."""
  for key, value in tree.items():
    if isinstance(value, dict):
      _finite(value, f"{prefix}{key}.")
    elif isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"config.{prefix}{key} must be a finite number, got {value!r}")


def _number(config: Any, key: str) -> float:
  value = _lookup(config, key)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f"config.{key} must be a number, got {value!r}")
  return value


def _lookup(config: Any, key: str) -> Any:
  node = config
  for part in key.split("."):
    if part not in node:
      raise ConfigError(f"config.{key} is missing; start from configs/base.py")
    node = node[part]
  return node


def validate(config: Any) -> None:
  """Raises ConfigError naming the first bad key."""
  _one_of(config, "model.cell", cells.names())
  _one_of(config, "task.name", tasks.names())
  for key in ("model.hidden_size", "model.num_layers", "task.length", "train.num_steps",
              "train.batch_size", "train.num_seeds", "train.log_every", "train.eval_every",
              "train.eval_batches", "train.eval_batch_size", "train.checkpoint_every",
              "train.keep_checkpoints"):
    _positive_int(config, key)
  seed = _lookup(config, "seed")
  # PRNGKey(seed) keeps 32 bits: -1 is the run of 2**32 - 1, and 2**32 that of 0.
  if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
    raise ConfigError(f"config.seed must be an integer in [0, 2**32), got {seed!r} (other "
                      "values repeat the run of a seed in that range)")
  _finite(config.to_dict() if hasattr(config, "to_dict") else config, "")
  for key in ("train.learning_rate", "train.weight_decay", "train.grad_clip",
              "train.warmup_steps", "model.dropout_rate", "task.min_length"):
    if _has(config, key):
      _non_negative(config, key)
  if _lookup(config, "train.learning_rate") == 0:
    raise ConfigError("config.train.learning_rate must be > 0")
  if not 0.0 <= _lookup(config, "model.dropout_rate") < 1.0:
    raise ConfigError("config.model.dropout_rate must be in [0, 1)")
  # The cells' float options, whatever the cell (a value only one cell reads is still checked).
  for key, ok, allowed in (
      ("model.recurrent_scale", lambda v: v > 0, "> 0"),
      ("model.chrono_t_max", lambda v: v > 2, "> 2 (it bounds U[1, t_max - 1])"),
      ("model.r_min", lambda v: 0 <= v < 1, "in [0, 1)"),
      ("model.r_max", lambda v: 0 <= v < 1, "in [0, 1)"),
      ("model.max_phase", lambda v: v > 0, "> 0")):
    if _has(config, key) and not ok(_number(config, key)):
      raise ConfigError(f"config.{key} must be {allowed}, got {_lookup(config, key)!r}")
  if _has(config, "model.r_min") and _has(config, "model.r_max") and (
      _lookup(config, "model.r_min") > _lookup(config, "model.r_max")):
    raise ConfigError(f"config.model.r_min={config.model.r_min} exceeds "
                      f"config.model.r_max={config.model.r_max}; the LRU ring needs r_min <= r_max")
  if _lookup(config, "task.min_length") > _lookup(config, "task.length"):
    raise ConfigError(
        f"config.task.min_length={config.task.min_length} exceeds "
        f"config.task.length={config.task.length}; min_length must be <= length (0: fixed length)")
  _one_of(config, "train.optimizer", ["adam", "adamw", "sgd"])
  if _has(config, "train.momentum") and not 0.0 <= _lookup(config, "train.momentum") < 1.0:
    raise ConfigError(f"config.train.momentum must be in [0, 1), got "
                      f"{_lookup(config, 'train.momentum')!r}")
  _one_of(config, "train.schedule", ["constant", "warmup_cosine"])
  _one_of(config, "train.on_nonfinite", ["stop", "skip"])
  # Cell options are checked whatever the cell, so a typo never hides until the cell changes.
  for key, allowed in (("model.activation", ["tanh", "relu"]),
                       ("model.input_init", ["glorot", "lecun"]),
                       ("model.recurrent_init", ["orthogonal", "identity", "glorot"]),
                       ("model.init", ["standard", "chrono"]),
                       ("model.norm", ["none", "layer", "rms"]),
                       ("model.scan_method", ["sequential", "associative", "auto"]),
                       ("train.seed_map", ["auto", "vmap", "map"])):
    if _has(config, key):
      _one_of(config, key, allowed)
  if _has(config, "model.residual") and not isinstance(_lookup(config, "model.residual"), bool):
    raise ConfigError(f"config.model.residual must be true or false, got "
                      f"{_lookup(config, 'model.residual')!r}")
  model = config.model
  try:
    from rnnlab import models  # local: models imports flax, keep this module light
    models.make_cell(model.cell, model.to_dict())
  except ValueError as e:
    raise ConfigError(f"config.model: {e}") from None
  try:
    tasks.get(config.task)
  except ValueError as e:
    raise ConfigError(f"config.task: {e}") from None


def _has(config: Any, key: str) -> bool:
  try:
    _lookup(config, key)
    return True
  except ConfigError:
    return False
