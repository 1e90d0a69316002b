"""Bidirectional layers and stacks, written once for every runner.

A runner runs one direction of one layer: `run(params, xs, lengths, reverse) -> (carry, ys)`, on
one sequence (`recurrent.scan`: xs [time, input]) or on a batch (`fused.layer`,
`recurrent.batched_scan`: xs [batch, time, input]). `layer` makes a uni- or bidirectional layer of
it; `stack` chains layers, with dropout between them and an optional residual update:

    x_0 = xs;   y_k = layer_k(x_k);   x_{k+1} = drop_{k+1}(y_k)            (plain)
                                      x_{k+1} = residual(x_k, drop_{k+1}(y_k))   (residual)

for k = 0 .. L-1 (no dropout after the last layer); the outputs are x_L. Dropout k draws its mask
from `jax.random.fold_in(key, k)`, so a batched stack given one key per example drops exactly what
the per-example stack drops.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from rnnlab.core.base import Params

Array = jax.Array
Runner = Callable[[Params, Array, Any, bool], tuple[Any, Array]]


def layer(run: Runner, layer_params: Sequence[Params], xs: Array,
          lengths: Any = None) -> tuple[tuple[Any, ...], Array]:
  """One uni- (1 params dict) or bidirectional (2 dicts: fwd, bwd) layer.

  xs: [..., time, input] -> (tuple of final carries, ys: [..., time, directions * hidden]); the
  backward direction reads the real steps last-to-first and returns its outputs in time order.
  """
  if len(layer_params) == 1:
    c, ys = run(layer_params[0], xs, lengths, False)
    return (c,), ys
  if len(layer_params) == 2:
    c_f, y_f = run(layer_params[0], xs, lengths, False)
    c_b, y_b = run(layer_params[1], xs, lengths, True)
    return (c_f, c_b), jnp.concatenate([y_f, y_b], axis=-1)
  raise ValueError(f"a layer has 1 or 2 directions, got {len(layer_params)}")


def dropout(key: Array, index: int, rate: float, xs: Array) -> Array:
  """Inverted dropout of one example's xs (any shape) before layer `index`.

  The mask is drawn from fold_in(key, index); batch with `jax.vmap` over (key, xs).
  """
  keep = jax.random.bernoulli(jax.random.fold_in(key, index), 1.0 - rate, xs.shape)
  return jnp.where(keep, xs / (1.0 - rate), 0.0)


def batched_dropout(keys: Array, index: int, rate: float, xs: Array) -> Array:
  """`dropout` per example: keys [batch], xs [batch, ...]; example b draws from keys[b] alone."""
  return jax.vmap(lambda key, x: dropout(key, index, rate, x))(keys, xs)


def dropout_between_layers(rate: float, key: Array | None, batched: bool
                           ) -> Callable[[int, Array], Array] | None:
  """The `drop` hook of `stack`: None for rate 0, else dropout before layer k from `key` (one
  example's) or from per-example keys [batch] when `batched`."""
  if rate <= 0.0:
    return None

  def drop(k: int, ys: Array) -> Array:
    if key is None:
      raise ValueError(f"dropout_rate > 0 needs {'dropout_keys' if batched else 'a dropout_key'}")
    return (batched_dropout if batched else dropout)(key, k, rate, ys)
  return drop


def stack(run_layer: Callable[[int, Array], tuple[Any, Array]], num_layers: int, xs: Array,
          drop: Callable[[int, Array], Array] | None = None,
          residual: Callable[[Array, Array], Array] | None = None) -> tuple[list[Any], Array]:
  """`num_layers` layers chained as in the module docstring.

  Args:
    run_layer: (k, x_k) -> (carries of layer k, y_k).
    num_layers: L.
    xs: the inputs x_0.
    drop: (k, y) -> y after dropout k (None: no dropout).
    residual: (x_k, y_k) -> x_{k+1} (None: x_{k+1} = y_k).

  Returns:
    (per-layer carries as `run_layer` returns them, x_L).
  """
  carries = []
  for k in range(num_layers):
    c, ys = run_layer(k, xs)
    carries.append(c)
    if drop is not None and k < num_layers - 1:
      ys = drop(k + 1, ys)
    xs = ys if residual is None else residual(xs, ys)
  return carries, xs


def stack_layers(run: Runner, stack_params: Sequence[Sequence[Params]], xs: Array,
                 lengths: Any = None, drop: Callable[[int, Array], Array] | None = None
                 ) -> tuple[list[tuple[Any, ...]], Array]:
  """The plain stack of `layer(run, ...)`s, one per entry of `stack_params` (1 or 2 dicts each).

  Returns (per-layer tuples of final carries, ys of the last layer).
  """
  run_layer = lambda k, x: layer(run, stack_params[k], x, lengths)
  return stack(run_layer, len(stack_params), xs, drop)
