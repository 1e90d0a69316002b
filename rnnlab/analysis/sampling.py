r"""Text generation from a trained character-level language model, one character at a time.

The notes' loop, "clear_state(); initialise h_0; for word in sentence: update h_t; predict":

    h_0 = 0 (every layer)
    for c in prompt:      h_t = RNN(h_{t-1}, E c)                  (stacked layers, cell.step)
    repeat n times:       p(. | prompt, x_<t) = softmax((W_o h_t + b_o) / tau)
                          x_{t+1} ~ p (tau = 0: argmax);  h_{t+1} = RNN(h_t, E x_{t+1})

The prompt is read with `recurrent.scan` starting from the given carry, and each sampled character
is fed back through the same function: the hidden state is carried across prompt and sample, never
reset. Sampling runs in one jitted `lax.scan`.

The model is the default `models.RNNModel` (embedding -> unidirectional stack -> per-step linear
readout) that task `charlm` trains; `LanguageModel` is its pure-function view. The deep form of
`models.RecurrentEncoder` (`model.residual`, `model.norm`) is read the same way, step by step:

    x = input_proj(E c)                          (residual only)
    per layer k: y = RNN_k(h_{k,t-1}, norm_k(x));  x = x + y (residual) or y
    logits = W_o norm_out(x) + b_o               (norm_out: residual with a norm)

with the encoder's own flax norm Modules applied to its trained `norm{k}`/`norm_out` params.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import models
from rnnlab.core import cells, recurrent
from rnnlab.errors import CheckpointError, RnnlabError

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class LanguageModel:
  """The parameters of a trained `RNNModel`, for step-by-step use.

  Attributes:
    cell: the recurrent cell.
    hidden_size: H.
    embedding: [vocab, embed].
    layers: per layer, the cell's params dict (unidirectional).
    readout_kernel: [H, vocab]; readout_bias: [vocab].
    residual, norm: the encoder's deep form (`models.RecurrentEncoder`); False, "none": plain.
    input_proj: with `residual`, the Dense params {kernel: [embed, H], bias: [H]}; else None.
    norms: with a norm, per layer the params of the norm before it; else ().
    norm_out: with `residual` and a norm, the params of the norm after the last layer; else None.
  """

  cell: cells.Cell
  hidden_size: int
  embedding: Array
  layers: tuple[Any, ...]
  readout_kernel: Array
  readout_bias: Array
  residual: bool = False
  norm: str = "none"
  input_proj: Any = None
  norms: tuple[Any, ...] = ()
  norm_out: Any = None

  @classmethod
  def from_params(cls, cell: cells.Cell, hidden_size: int, params: Any, residual: bool = False,
                  norm: str = "none") -> "LanguageModel":
    """params: one replica's RNNModel params ({embed, encoder: {layer{k}_fwd, and with the deep
    form input_proj, norm{k}, norm_out}, readout}); residual, norm: config.model's."""
    enc = params["encoder"]
    if any(k.endswith("_bwd") for k in enc):
      raise RnnlabError("a bidirectional model cannot generate text")
    num_layers = sum(1 for k in enc if k.startswith("layer") and k.endswith("_fwd"))
    layers = tuple(enc[f"layer{k}_fwd"] for k in range(num_layers))
    norms = () if norm == "none" else tuple(enc[f"norm{k}"] for k in range(num_layers))
    return cls(cell, hidden_size, params["embed"]["embedding"], layers,
               params["readout"]["kernel"], params["readout"]["bias"], residual=residual,
               norm=norm, input_proj=enc["input_proj"] if residual else None, norms=norms,
               norm_out=enc["norm_out"] if residual and norm != "none" else None)

  @property
  def vocab_size(self) -> int:
    return self.embedding.shape[0]


jax.tree_util.register_dataclass(
    LanguageModel, data_fields=["embedding", "layers", "readout_kernel", "readout_bias",
                                "input_proj", "norms", "norm_out"],
    meta_fields=["cell", "hidden_size", "residual", "norm"])


def language_model(config: Any, params: Any) -> LanguageModel:
  """The LanguageModel of one replica's params of a run made with `config` (its model keys)."""
  cell = _cell(config.model.cell, tuple(sorted(config.model.to_dict().items())))
  return LanguageModel.from_params(cell, config.model.hidden_size, params,
                                   residual=bool(config.model.get("residual", False)),
                                   norm=str(config.model.get("norm", "none")))


def initial_state(lm: LanguageModel) -> tuple[Any, ...]:
  """clear_state(): the zero carry of every layer."""
  return tuple(lm.cell.initial_carry(lm.hidden_size) for _ in lm.layers)


def _apply_norm(lm: LanguageModel, params: Any, xs: Array) -> Array:
  """The encoder's norm Module with trained `params`, over xs [time, features] (per step)."""
  return models.norm_module(lm.norm).apply({"params": params}, xs)


def advance(lm: LanguageModel, state: tuple[Any, ...], tokens: Array
            ) -> tuple[tuple[Any, ...], Array]:
  """Reads tokens [time] from `state`: (state after the last one, logits [time, vocab]);
  logits[t] predicts the token after tokens[t]."""
  xs = lm.embedding[tokens]
  if lm.residual:
    xs = nn.Dense(lm.hidden_size).apply({"params": lm.input_proj}, xs)
  new_state = []
  for k, (params, carry) in enumerate(zip(lm.layers, state)):
    h = xs if lm.norm == "none" else _apply_norm(lm, lm.norms[k], xs)
    carry, ys = recurrent.scan(lm.cell, params, h, carry=carry)
    new_state.append(carry)
    xs = xs + ys if lm.residual else ys
  if lm.norm_out is not None:
    xs = _apply_norm(lm, lm.norm_out, xs)
  return tuple(new_state), xs @ lm.readout_kernel + lm.readout_bias


@functools.partial(jax.jit, static_argnames=("length",))
def sample(lm: LanguageModel, key: Array, state: tuple[Any, ...], logits: Array, length: int,
           temperature: float | Array) -> Array:
  """Samples `length` tokens, feeding each back; state/logits: after the prompt ([vocab]).

  temperature 0: greedy (argmax). Returns int32 [length].
  """
  def body(carry, k):
    state, logits = carry
    greedy = jnp.argmax(logits).astype(jnp.int32)
    scaled = logits / jnp.maximum(temperature, 1e-6)
    drawn = jax.random.categorical(k, scaled).astype(jnp.int32)
    token = jnp.where(temperature > 0, drawn, greedy)
    state, next_logits = advance(lm, state, token[None])
    return (state, next_logits[0]), token
  _, tokens = jax.lax.scan(body, (state, logits), jax.random.split(key, length))
  return tokens


@jax.jit
def read_prompt(lm: LanguageModel, tokens: Array) -> tuple[tuple[Any, ...], Array]:
  """From a cleared state, reads the prompt tokens [time] -> (state, next-token logits [vocab])."""
  state, logits = advance(lm, initial_state(lm), tokens)
  return state, logits[-1]


@jax.jit
def stream_nll(lm: LanguageModel, tokens: Array) -> Array:
  """Mean next-token NLL (nats) over tokens [N] read in one pass, state carried throughout."""
  _, logits = advance(lm, initial_state(lm), tokens[:-1])
  logp = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(logp, tokens[1:, None], axis=1))


def stream_bits_per_char(lm: LanguageModel, tokens: Any) -> float:
  """Bits per character of tokens [N] read as one sequence (e.g. the whole validation split)."""
  return float(stream_nll(lm, jnp.asarray(tokens, jnp.int32))) / math.log(2.0)


# ----------------------------------------------------------------------------- from a workdir

@dataclasses.dataclass
class Generation:
  """What `generate_from_workdir` returns.

  Attributes:
    prompt, continuation: the texts (`text` is both joined).
    next_char_probs: [vocab] softmax after the prompt (temperature 1).
    vocab: the vocabulary's characters, in id order.
    step: the training step of the restored checkpoint.
    validation_bpc: bits per character of the whole validation split in one pass (if asked for).
  """

  prompt: str
  continuation: str
  next_char_probs: np.ndarray
  vocab: str
  step: int
  validation_bpc: float | None = None

  @property
  def text(self) -> str:
    return self.prompt + self.continuation


@functools.lru_cache(maxsize=8)
def _cell(name: str, options: tuple[tuple[str, Any], ...]) -> cells.Cell:
  # One Cell object per configuration: it is a static part of LanguageModel, so an equal object
  # lets the jitted functions above reuse their compilation across loads.
  return models.make_cell(name, options)


def load_language_model(workdir: str, best: bool = False) -> tuple[LanguageModel, Any, int]:
  """(LanguageModel of seed replica 0, the charlm task, checkpoint step) of a charlm run."""
  from rnnlab.training import (
    evaluation,  # local: evaluation imports the whole training stack
    train,
  )
  if not os.path.isdir(workdir):
    raise CheckpointError(f"workdir {workdir!r} does not exist")
  config = train.load_config(workdir)
  if config.task.name != "charlm":
    raise RnnlabError(f"{workdir!r} holds a {config.task.name!r} run; generation needs a "
                      "charlm run (configs/charlm.py)")
  try:
    trainer, state = evaluation.restore_run(workdir, best=best, config=config)
  except CheckpointError as e:
    raise CheckpointError(
        f"{e} (The vocabulary is rebuilt from config.task.path={config.task.path!r}: if that "
        "file changed since training, the model no longer fits it.)") from None
  lm = language_model(config, jax.tree.map(lambda x: x[0], state.params))
  step = int(np.asarray(state.step).reshape(-1)[0])
  return lm, trainer.task, step


def generate_from_workdir(workdir: str, prompt: str, length: int = 200,
                          temperature: float = 0.8, seed: int = 0, best: bool = False,
                          plot_path: str | None = None, top_k: int = 10,
                          validation_bpc: bool = False) -> Generation:
  """Restores a charlm run, reads `prompt`, samples `length` characters; optionally writes the
  next-character bar chart (`next_char_chart.next_char_bar`) and measures the validation bpc."""
  if not prompt:
    raise RnnlabError("prompt must not be empty: the model predicts the next character of a "
                      "text it has read")
  if length < 0:
    raise RnnlabError(f"length must be >= 0, got {length}")
  if not temperature >= 0:
    raise RnnlabError(f"temperature must be >= 0 (0: greedy), got {temperature}")
  _check_top_k(top_k)
  lm, task, step = load_language_model(workdir, best)
  tokens = task.vocab.encode(prompt)  # unknown characters: RnnlabError listing them
  state, logits = read_prompt(lm, jnp.asarray(tokens))
  out = sample(lm, jax.random.PRNGKey(seed), state, logits, length, temperature)
  result = Generation(prompt, task.vocab.decode(out), np.asarray(jax.nn.softmax(logits)),
                      task.vocab.chars, step)
  if validation_bpc:
    result.validation_bpc = stream_bits_per_char(lm, task.val_data)
  if plot_path:
    write_next_char_chart(result, plot_path, top_k)
  return result


def _check_top_k(top_k: int) -> None:
  if top_k < 1:
    raise RnnlabError(f"top_k must be >= 1 (the characters the chart shows), got {top_k}")


def write_next_char_chart(result: Generation, path: str, top_k: int = 10) -> None:
  """The bar chart of the `top_k` most probable characters after `result.prompt`, to `path`;
  RnnlabError in one line (nothing written) when the path cannot take it."""
  from rnnlab.analysis import next_char_chart  # local: matplotlib is needed only here
  _check_top_k(top_k)
  try:
    next_char_chart.next_char_bar(result.next_char_probs, result.vocab, result.prompt, path,
                                  top_k=top_k)
  except (OSError, ValueError, RnnlabError) as e:  # RnnlabError: the atomic write's, naming the file
    reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0].split(": ")[-1]
    raise RnnlabError(f"cannot write the next-character chart to {path!r} ({reason}); give a "
                      "path in a writable folder ending in .png (or .pdf, .svg)") from None
