"""Importing weights trained elsewhere into an rnnlab workdir (`experiments/import_weights.py`).

The result is a workdir like a training run's at step 0: `config.json` and `checkpoints/0/` with a
full train state (the imported params, a fresh optimizer state, the seed's keys), so
`experiments.evaluate`, `experiments.generate` and `evaluation.restore_run` use it as it is, and
`experiments.train` with the same config fine-tunes from it (it resumes at step 0). With
`train.num_seeds > 1` every seed replica starts from the same imported weights.

The model is rnnlab's `RNNModel` (embedding or float features -> RecurrentEncoder -> readout):
params {"embed": {"embedding": [vocab, embed]}, "encoder": {"layer{k}_fwd"/"_bwd": cell params},
"readout": {"kernel": [features, out], "bias": [out]}}. The recurrent weights are converted by
`rnnlab.interop.torch_weights`, `flax_weights` and `keras_weights`; the embedding and readout are
taken from the file when present (`rnnlab.interop.peer_files` lists the names read from each
source), else initialised from `config.seed` exactly as a fresh run would (the log and the report
say which). The file's layer count, directions, hidden size and cell must match the config.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rnnlab import models
from rnnlab.errors import RnnlabError
from rnnlab.interop.peer_files import LOADERS, PARTS, SOURCES, load_flax, load_keras, load_torch
from rnnlab.training import checkpoint, train

__all__ = ["LOADERS", "PARTS", "SOURCES", "import_weights", "load_flax", "load_keras",
           "load_torch"]


# ----------------------------------------------------------------------------- the workdir

def _check_parts(imported: Mapping[str, Any], model_params: Mapping[str, Any], where: str
                 ) -> None:
  """Every imported part exists in the model, with the model's keys and shapes.

  `model_params` leaves have a leading [seeds] axis (arrays or shape structs). Raises RnnlabError
  naming the first part or path that differs.
  """
  for part in sorted(imported, key=lambda p: PARTS.index(p) if p in PARTS else len(PARTS)):
    if part not in model_params:
      what = {"embed": "no embedding (its task feeds float features)"}.get(part, f"no {part}")
      raise RnnlabError(f"{where} has {part} weights, but this config's model has {what}")
    names = lambda tree: {jax.tree_util.keystr(p): leaf
                          for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
    got, want = names(imported[part]), names(model_params[part])
    if set(got) != set(want):
      missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
      raise RnnlabError(f"{where}: {part} params differ from the model's: missing "
                        f"{missing or 'none'}, unexpected {extra or 'none'}")
    for name, ref in want.items():
      if tuple(np.shape(got[name])) != tuple(ref.shape[1:]):
        hint = {"embed": " (config.model.embed_size and the task's vocabulary)",
                "encoder": " (layer 0 reads config.model.embed_size or the task's features)",
                "readout": " (the task's output size and the encoder's output width)"}
        raise RnnlabError(f"{where}: {part}{name} has shape {tuple(np.shape(got[name]))}, the "
                          f"model needs {tuple(ref.shape[1:])}{hint.get(part, '')}")


def _merge(imported: Mapping[str, Any], model_params: Mapping[str, Any]) -> dict[str, Any]:
  """The model's params (leaves [seeds, ...]) with the imported parts (checked) in their place,
  broadcast over the seeds."""
  out = dict(model_params)
  for part, tree in imported.items():
    out[part] = jax.tree.map(lambda g, r: jnp.broadcast_to(jnp.asarray(g, r.dtype), r.shape),
                             tree, model_params[part])
  return out


def import_weights(source: str, path: str, config: ml_collections.ConfigDict, workdir: str,
                   rnn_prefix: str | None = None) -> dict[str, Any]:
  """Writes an rnnlab workdir whose step-0 checkpoint holds the weights in `path`.

  Args:
    source: "torch", "flax" or "keras" (`peer_files`: the file kinds and names read).
    path: the file to import.
    config: the resolved rnnlab config; its model must fit the weights.
    workdir: created if needed; must hold no checkpoint yet.
    rnn_prefix: torch only: key prefix of the recurrent module (default "rnn.").

  Returns:
    {"workdir", "step": 0, "from", "file", "imported": {part: where}, "initialised": [part]}.
  """
  if source not in LOADERS:
    raise RnnlabError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
  if not os.path.isfile(path):
    raise RnnlabError(f"path={path!r} is not a file")
  trainer = train.Trainer(config)
  if not isinstance(trainer.model, models.RNNModel):
    raise RnnlabError(f"task {trainer.task.name!r} builds its own model "
                      f"({type(trainer.model).__name__}); weights can be imported only into "
                      "rnnlab's RNNModel (embedding -> recurrent layers -> readout)")
  if os.path.isdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)) and os.listdir(
      os.path.join(workdir, checkpoint.CHECKPOINT_DIR)):
    raise RnnlabError(f"{workdir!r} already holds checkpoints; import into a new workdir")
  params, where_from = LOADERS[source](path, config, rnn_prefix=rnn_prefix)
  _check_parts(params, trainer.abstract_state().params, f"the {source} file {path!r}")

  train.prepare_workdir(config, workdir)
  state = trainer.init()
  merged = _merge(params, state.params)
  state = state.replace(params=merged, opt_state=jax.vmap(trainer.tx.init)(merged))
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints, save_best=False)
  try:
    ckpt.save(0, state)
    ckpt.wait()
  finally:
    ckpt.close()

  initialised = [part for part in state.params if part not in params]
  for part, where in where_from.items():
    logging.info("%s: imported from %s", part, where)
  for part in initialised:
    logging.info("%s: not in %s; initialised from config.seed=%d as a fresh run would", part,
                 path, config.seed)
  logging.info("Wrote %s with a step-0 checkpoint of the imported weights.", workdir)
  return {"workdir": workdir, "step": 0, "from": source, "file": path,
          "imported": where_from, "initialised": initialised}
