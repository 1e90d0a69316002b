"""Task registry: `tasks.get(config.task)` builds a task from its config section by name."""

from __future__ import annotations

from typing import Any, Callable

from rnnlab.tasks.base import ModelSpec, Task, is_solved
from rnnlab.tasks.memory import AddingTask, CopyTask

__all__ = ["ModelSpec", "Task", "is_solved", "get", "names", "register"]


def _threshold(cfg: Any, default: float) -> float:
  value = cfg.get("solved_threshold")
  return default if value is None else value


def _copy(cfg: Any) -> Task:
  return CopyTask(cfg.length, cfg.get("min_length", 0), _threshold(cfg, 0.99))


def _adding(cfg: Any) -> Task:
  return AddingTask(cfg.length, cfg.get("min_length", 0), _threshold(cfg, 0.01))


def _charlm(cfg: Any) -> Task:
  from rnnlab.tasks.charlm import CharLMTask  # local: importing the registry stays light
  return CharLMTask.from_config(cfg)


def _translation(cfg: Any) -> Task:
  from rnnlab.tasks.translation import TranslationTask
  return TranslationTask.from_config(cfg)


_REGISTRY: dict[str, Callable[[Any], Task]] = {"copy": _copy, "adding": _adding,
                                               "charlm": _charlm, "translation": _translation}


def names() -> list[str]:
  return sorted(_REGISTRY)


def register(name: str, builder: Callable[[Any], Task]) -> None:
  """Adds a task builder: a function of the `config.task` section that returns a Task."""
  _REGISTRY[name] = builder


def get(task_config: Any) -> Task:
  """Builds the task named `task_config.name` from its config section."""
  name = task_config.name
  if name not in _REGISTRY:
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
  return _REGISTRY[name](task_config)
