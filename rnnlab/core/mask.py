"""The one mask of real (not padded) steps that every runner, model and task reads.

A sequence of `length` real steps padded to `time` steps is real at t < length:
    mask[..., t] = t < lengths[...]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def sequence_mask(lengths: Array | int, time: int) -> Array:
  """True at the real steps.

  Args:
    lengths: [batch] numbers of real steps (any leading shape; a scalar for one sequence), may be
      traced.
    time: the padded number of steps.

  Returns:
    bool [batch, time] ([time] for a scalar length).
  """
  return jnp.arange(time) < jnp.asarray(lengths)[..., None]
