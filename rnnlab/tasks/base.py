"""The interface every task implements, and the batch it produces.

A task turns a PRNG key into a batch inside the jitted train step (no host round trip), and knows
its loss, its headline metric, the chance-level baseline and when it counts as solved. It knows
nothing of models: the model is described to it only by the `ModelSpec` it asks for.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the model must look like for a task.

  Attributes:
    vocab_size: input token vocabulary, or None for float feature inputs.
    out_features: size of the readout (vocabulary logits, or 1 for a regression value).
    readout: "per_step" (one output per time step) or "last" (one per sequence).
    architecture: "rnn" (input -> recurrent encoder -> readout) or "seq2seq" (a recurrent
      encoder and an autoregressive decoder over `out_features` target tokens).
    causal: the model must not read ahead of the step it predicts (no bidirectional encoder).
    max_target_len: seq2seq: decoded steps [target time].
    special_tokens: seq2seq: the target vocabulary's (bos, eos, pad) ids.
  """

  vocab_size: int | None
  out_features: int
  readout: str
  architecture: str = "rnn"
  causal: bool = False
  max_target_len: int = 0
  special_tokens: tuple[int, int, int] = (0, 0, 0)


class Task(Protocol):
  """A task. `batch` holds at least `inputs`, `targets` and `lengths` ([batch] real steps)."""

  name: str
  metric: str          # headline metric name, e.g. "accuracy" or "mse"
  higher_is_better: bool
  baseline: float      # chance-level value of `baseline_of` (see below)
  baseline_of: str     # which metric the baseline refers to ("loss" or the metric)
  solved_threshold: float
  model_spec: ModelSpec
  max_time: int        # padded time of a batch

  def sample(self, key: Array, batch_size: int) -> dict[str, Array]:
    """A batch of `batch_size` examples from `key`: {"inputs", "targets", "lengths"}."""

  def loss_and_metrics(self, outputs: Array, batch: dict[str, Array]) -> tuple[Array, dict[str, Any]]:
    """Scalar loss (mean over real steps/examples) and a dict with at least `self.metric`."""


def is_solved(task: Task, metrics: dict[str, Any]) -> bool:
  value = metrics[task.metric]
  return value >= task.solved_threshold if task.higher_is_better else value < task.solved_threshold


# Optional task hooks, used by rnnlab.training.train when a task defines them:
#   forward(model, params, batch, deterministic, rngs) -> outputs   (instead of model.apply(inputs, lengths))
#   evaluate(model, params, batch) -> metrics dict (evaluation instead of loss_and_metrics' metrics)
