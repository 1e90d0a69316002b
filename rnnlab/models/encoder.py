"""flax.linen Modules that own parameters and call the pure functions of `cells`/`recurrent`.

No recurrent math lives here: a Module creates parameter dicts with `cell.init` and stacks its
layers with `rnnlab.core.layers`, each direction run over the batch by `fused.layer` (or by
`recurrent.batched_scan`, the per-example reference, with `RecurrentEncoder(fused=False)`).

Parameter tree of `RecurrentEncoder`: `layer{k}_fwd` (and `layer{k}_bwd` when bidirectional), each a
cell params dict (see `rnnlab.core.cells`). A bidirectional encoder has exactly twice the parameters of
a unidirectional one. The deep form (`residual=True` and/or `norm`) adds `input_proj` (a Dense
to the model width D = directions * H, with `residual`), `norm{k}` before each layer and
`norm_out` after the last (with `residual` and a `norm`).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.core import cells, fused, layers, recurrent
from rnnlab.core.mask import sequence_mask

Array = jax.Array


def make_cell(name: str, options: dict[str, Any] | Sequence[tuple[str, Any]] = ()) -> cells.Cell:
  """`cells.get(name, ...)` with only the options that cell's factory accepts.

  One config holds the options of every cell (forget_bias, reset_after, ...); each cell takes the
  ones it understands, so switching `model.cell` never needs other config edits.
  """
  options = dict(options)
  accepted = cells.accepted_options(name)
  return cells.get(name, **{k: v for k, v in options.items() if k in accepted})


NORMS = ("none", "layer", "rms")


def norm_module(kind: str, name: str | None = None) -> nn.Module:
  """The normalisation `kind` ("layer" or "rms") as a flax Module; `sampling` applies the same
  Module to a trained encoder's `norm{k}` params, so generation normalises exactly as training."""
  if kind == "layer":
    return nn.LayerNorm(name=name)
  if kind == "rms":
    return nn.RMSNorm(name=name)
  raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class RecurrentEncoder(nn.Module):
  """Stacked, optionally bidirectional recurrent layers over a batch.

  The plain stack feeds each layer's outputs to the next. The deep form the parallel-in-time
  papers use (Feng et al. 2024, Orvieto et al. 2023) is a pre-norm residual stack:

    x_0 = input_proj(inputs)                   (residual only: a Dense to D = directions * H)
    x_{k+1} = x_k + dropout(layer_k(norm_k(x_k)))   (residual; without it: layer_k(norm_k(x_k)))
    outputs = norm_out(x_L)                     (residual with a norm)

  where norm is LayerNorm ("layer"), RMSNorm ("rms") or the identity ("none"). Padded steps stay
  exactly zero in every form, and the recurrence never reads them.

  Attributes:
    cell: registry name of the cell.
    hidden_size: H per direction.
    num_layers: stacked layers.
    bidirectional: two directions per layer, outputs concatenated ([..., 2H]).
    dropout_rate: dropout between layers (training only).
    cell_options: (key, value) pairs passed to the cell factory (see `make_cell`).
    fused: run each layer over the whole batch with `rnnlab.core.fused.layer` (same results as the
      per-example `jax.vmap(recurrent.stack)`, faster (experiments/results/benchmark.md);
      cells it does not cover fall back to `recurrent`). False: the vmapped reference path.
    residual: the residual stack above (inputs projected to the model width first).
    norm: "none", "layer" or "rms": a normalisation before every layer (and after the last,
      with `residual`).
  """

  cell: str = "lstm"
  hidden_size: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  dropout_rate: float = 0.0
  cell_options: tuple[tuple[str, Any], ...] = ()
  fused: bool = True
  residual: bool = False
  norm: str = "none"

  @nn.compact
  def __call__(self, xs: Array, lengths: Array | None = None,
               deterministic: bool = True) -> tuple[list[tuple[Any, ...]], Array]:
    """xs: [batch, time, features], lengths: [batch] or None.

    Returns (per-layer tuples of final carries, each with a leading [batch] axis;
             ys: [batch, time, directions * hidden]).
    """
    cell = make_cell(self.cell, self.cell_options)
    directions = ("fwd", "bwd") if self.bidirectional else ("fwd",)
    if self.norm not in NORMS:
      raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
    deep = self.residual or self.norm != "none"
    if self.residual:
      xs = nn.Dense(self.hidden_size * len(directions), name="input_proj")(xs)
    stack_params = []
    in_size = xs.shape[-1]
    for k in range(self.num_layers):
      layer_params = []
      for d in directions:
        init = lambda key, n=in_size: cell.init(key, n, self.hidden_size)
        layer_params.append(self.param(f"layer{k}_{d}", init))
      stack_params.append(layer_params)
      in_size = self.hidden_size * len(directions)

    rate = 0.0 if deterministic else self.dropout_rate
    drop = None
    if rate > 0.0:
      keys = jax.random.split(self.make_rng("dropout"), xs.shape[0])
      drop = lambda k, ys: layers.batched_dropout(keys, k, rate, ys)
    # One direction of one layer over the batch: fused, or the per-example reference path.
    run = functools.partial(fused.layer if self.fused else recurrent.batched_scan, cell)
    if not deep:
      return layers.stack_layers(run, stack_params, xs, lengths, drop)

    valid = None if lengths is None else sequence_mask(lengths, xs.shape[1])[..., None]
    mask = (lambda x: x) if valid is None else (lambda x: jnp.where(valid, x, 0.0))

    def run_layer(k: int, x: Array) -> tuple[tuple[Any, ...], Array]:
      h = x if self.norm == "none" else norm_module(self.norm, f"norm{k}")(x)
      return layers.layer(run, stack_params[k], h, lengths)

    residual = (lambda x, ys: mask(x + ys)) if self.residual else None
    carries, xs = layers.stack(run_layer, self.num_layers, mask(xs), drop, residual)
    if self.residual and self.norm != "none":
      xs = mask(norm_module(self.norm, "norm_out")(xs))
    return carries, xs


def cell_options_from_config(model: Any) -> tuple[tuple[str, Any], ...]:
  """The (key, value) options of `config.model` that its cell's factory accepts, sorted."""
  accepted = cells.accepted_options(model.cell)
  return tuple(sorted((k, v) for k, v in model.to_dict().items() if k in accepted))


def encoder_from_config(model: Any, bidirectional: bool | None = None) -> RecurrentEncoder:
  """The RecurrentEncoder that `config.model` describes (cell options filtered per cell)."""
  options = cell_options_from_config(model)
  return RecurrentEncoder(
      cell=model.cell, hidden_size=model.hidden_size, num_layers=model.num_layers,
      bidirectional=model.bidirectional if bidirectional is None else bidirectional,
      dropout_rate=model.dropout_rate, cell_options=options,
      residual=bool(model.get("residual", False)), norm=str(model.get("norm", "none")))


def last_real_step(ys: Array, lengths: Array | None, bidirectional: bool) -> Array:
  """The summary of each sequence read at its last real step.

  ys: [batch, time, directions * H] -> [batch, directions * H]. Unidirectional: ys at length - 1.
  Bidirectional: forward half at length - 1 and backward half at step 0 (where the backward
  direction has read the whole sequence). A length-0 sequence gives zeros.
  """
  batch, time = ys.shape[:2]
  if lengths is None:
    lengths = jnp.full((batch,), time)
  idx = jnp.clip(lengths - 1, 0, time - 1)
  last = jnp.take_along_axis(ys, idx[:, None, None], axis=1)[:, 0]
  last = jnp.where((lengths > 0)[:, None], last, 0.0)
  if not bidirectional:
    return last
  half = ys.shape[-1] // 2
  return jnp.concatenate([last[:, :half], ys[:, 0, half:]], axis=-1)


class RNNModel(nn.Module):
  """input (token embedding or features) -> RecurrentEncoder -> linear readout.

  Attributes:
    vocab_size: if set, inputs are int tokens [batch, time] embedded to `embed_size`;
      otherwise inputs are float features [batch, time, features].
    out_features: readout size (vocabulary logits, or 1 for a regression value).
    readout: "per_step" ([batch, time, out]) or "last" ([batch, out], see `last_real_step`).
  """

  encoder: RecurrentEncoder
  out_features: int
  readout: str = "per_step"
  vocab_size: int | None = None
  embed_size: int = 32

  @nn.compact
  def __call__(self, inputs: Array, lengths: Array | None = None,
               deterministic: bool = True) -> Array:
    if self.vocab_size is not None:
      xs = nn.Embed(self.vocab_size, self.embed_size, name="embed")(inputs)
    else:
      xs = inputs
    _, ys = self.encoder(xs, lengths, deterministic)
    if self.readout == "last":
      ys = last_real_step(ys, lengths, self.encoder.bidirectional)
    elif self.readout != "per_step":
      raise ValueError(f"readout must be 'per_step' or 'last', got {self.readout!r}")
    out = nn.Dense(self.out_features, name="readout")(ys)
    if self.readout == "per_step" and lengths is not None:
      out = jnp.where(sequence_mask(lengths, out.shape[1])[..., None], out, 0.0)
    return out
