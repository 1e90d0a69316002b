"""The sweep spec: `key=v1,v2;key2=v3` (the --sweep flag) or a config file's `get_sweep()`,
parsed into typed config overrides.

Spec syntax: `key=v1,v2;key2=v3,v4` -> the Cartesian product, the first key varying slowest.
Values take the type of the config key (int, float, bool, str). A config file may instead define
`get_sweep()` returning {key: [values]} (a product) or [{key: value}, ...] (an explicit list of
points).
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Sequence

import ml_collections

from rnnlab.errors import ConfigError

Overrides = tuple[tuple[str, Any], ...]


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
