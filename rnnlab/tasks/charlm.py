"""Character-level language modelling on a local UTF-8 text file.

The corpus c_1..c_N (characters of the file, or of the built-in text) is mapped to ids with a
vocabulary of its distinct characters, sorted by code point (so it is rebuilt identically from the
same file: `experiments.generate` needs nothing but the workdir's config). The last
`validation_fraction` of the text is held out.

Training batch (`sample`, inside the jitted step; the corpus is a device array):
  inputs  [batch, length]: ids of a random window c_s .. c_{s+length-1} of the training split
  targets [batch, length]: the next characters c_{s+1} .. c_{s+length}
Loss: mean next-character cross-entropy (nats) over real steps; headline metric bits per
character, bpc = loss / ln 2 (lower is better). Baseline: the unigram entropy of the training split,
  H_1 = -sum_v p(v) log2 p(v),   p(v) = count(v) / N_train,
which a model that ignores its input and predicts character frequencies reaches.

Evaluation (the `evaluate` hook) reads windows of the validation split with lengths drawn in
[min_length, length] (min_length 0: all `length`), padded to `length` and masked: padded steps
contribute nothing to the loss. Each window starts from a zero state, so this is the bpc of
contexts up to `length` characters; `rnnlab.analysis.sampling.stream_bits_per_char` gives the bpc of the
whole validation split read in one pass.

Default corpus (`path = "builtin:python-reference"`): the topics of the Python Language Reference
that CPython ships in `pydoc_data.topics` (the text `help("if")` prints), joined in sorted topic
order: about 0.47M characters of English prose and code, present wherever Python is, no download.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab.core.mask import sequence_mask
from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.tasks.base import ModelSpec
from rnnlab.tasks.memory import _draw_lengths

Array = jax.Array

BUILTIN_CORPUS = "builtin:python-reference"


# ----------------------------------------------------------------------------- corpus

def builtin_text() -> str:
  """The Python Language Reference topics shipped with CPython (`pydoc_data.topics`)."""
  try:
    from pydoc_data import topics
  except ImportError:  # some minimal Python builds drop pydoc_data
    raise ConfigError(f"config.task.path={BUILTIN_CORPUS!r}: this Python has no pydoc_data module; "
                      "set config.task.path to a text file") from None
  return "\n\n".join(topics.topics[name] for name in sorted(topics.topics))


def read_text(path: str) -> str:
  """The text of `path` (or the built-in corpus); a clear ConfigError if it is not usable text."""
  if path == BUILTIN_CORPUS:
    return builtin_text()
  where = f"config.task.path={path!r}"
  if not path:
    raise ConfigError(f"{where}: empty path; give a UTF-8 text file or {BUILTIN_CORPUS!r}")
  if not os.path.exists(path):
    raise ConfigError(f"{where}: no such file")
  if not os.path.isfile(path):
    raise ConfigError(f"{where} is not a regular file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ConfigError(f"{where}: cannot read it ({e.strerror})") from None
  if not data:
    raise ConfigError(f"{where}: the file is empty")
  nul = data.find(b"\0")
  if nul >= 0:
    raise ConfigError(f"{where} looks binary (a NUL byte at offset {nul}); give a UTF-8 text file")
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ConfigError(f"{where} is not UTF-8 text (invalid byte at offset {e.start}); give a "
                      "UTF-8 text file") from None


class Vocabulary:
  """The distinct characters of a text, sorted by code point; id = position."""

  def __init__(self, chars: str):
    self.chars = chars
    self._ids = {c: i for i, c in enumerate(chars)}

  @classmethod
  def of_text(cls, text: str) -> "Vocabulary":
    return cls("".join(sorted(set(text))))

  @property
  def size(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    """text -> int32 ids [len(text)]; RnnlabError naming any character outside the vocabulary."""
    unknown = sorted(set(text) - set(self._ids))
    if unknown:
      raise RnnlabError(
          f"characters not in the vocabulary ({self.size} characters of the training corpus): "
          f"{', '.join(repr(c) for c in unknown)}")
    return np.fromiter((self._ids[c] for c in text), np.int32, len(text))

  def decode(self, ids: Any) -> str:
    return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


@functools.lru_cache(maxsize=4)
def _load(path: str, stamp: tuple[int, int]) -> tuple[Vocabulary, np.ndarray]:
  del stamp  # part of the cache key only: an edited file is read again
  text = read_text(path)
  vocab = Vocabulary.of_text(text)
  ids = vocab.encode(text)
  return vocab, ids.astype(np.uint8 if vocab.size <= 256 else np.int32)


def load_corpus(path: str) -> tuple[Vocabulary, np.ndarray]:
  """(vocabulary, ids [N]) of the text at `path` (cached per path, size and mtime)."""
  stamp = (0, 0)
  if path != BUILTIN_CORPUS and os.path.isfile(path):
    st = os.stat(path)
    stamp = (st.st_size, st.st_mtime_ns)
  return _load(path, stamp)


# ----------------------------------------------------------------------------- losses

def per_char_nll(logits: Array, targets: Array, lengths: Array) -> Array:
  """Next-character negative log-likelihood in nats, zero at padding.

  logits: [batch, time, vocab], targets: [batch, time], lengths: [batch] -> [batch, time].
  """
  valid = sequence_mask(lengths, logits.shape[1])
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.where(valid, nll, 0.0)


# ----------------------------------------------------------------------------- the task

class CharLMTask:
  """Next-character prediction on a text file; metric bits per character.

  Args:
    path: a UTF-8 text file, or BUILTIN_CORPUS.
    length: training window (and longest validation window) in characters.
    min_length: shortest validation window (0: every window is `length`).
    validation_fraction: the trailing part of the text held out.
    solved_threshold: bpc below which the task counts as solved (default 0: never, so a run
      trains for its whole budget).
  """

  name = "charlm"
  metric = "bpc"
  higher_is_better = False
  baseline_of = "bpc"

  def __init__(self, path: str = BUILTIN_CORPUS, length: int = 128, min_length: int = 0,
               validation_fraction: float = 0.1, solved_threshold: float = 0.0):
    if not 0.0 < validation_fraction < 1.0:
      raise ConfigError(f"config.task.validation_fraction must be in (0, 1), got "
                        f"{validation_fraction!r}")
    self.path = path
    self.length = length
    self.min_length = min(min_length or length, length)
    self.solved_threshold = solved_threshold
    self.max_time = length
    self.vocab, ids = load_corpus(path)
    n_val = int(round(len(ids) * validation_fraction))
    train, val = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
    if min(len(train), len(val)) < length + 1:
      raise ConfigError(
          f"config.task.path={path!r} has {len(ids)} characters: {len(train)} for training and "
          f"{len(val)} for validation, but a window needs config.task.length + 1 = {length + 1}. "
          "Use a longer text or a smaller config.task.length.")
    counts = np.bincount(train, minlength=self.vocab.size)
    p = counts[counts > 0] / len(train)
    self.baseline = float(-np.sum(p * np.log2(p)))
    self.train_data = jnp.asarray(train)
    self.val_data = jnp.asarray(val)
    self.model_spec = ModelSpec(vocab_size=self.vocab.size, out_features=self.vocab.size,
                                readout="per_step", causal=True)

  @classmethod
  def from_config(cls, cfg: Any) -> "CharLMTask":
    threshold = cfg.get("solved_threshold")
    return cls(cfg.get("path", BUILTIN_CORPUS), cfg.length, cfg.get("min_length", 0),
               cfg.get("validation_fraction", 0.1), 0.0 if threshold is None else threshold)

  def _windows(self, data: Array, starts: Array) -> Array:
    """data [N], starts [batch] -> int32 [batch, length + 1]."""
    take = lambda s: jax.lax.dynamic_slice(data, (s,), (self.length + 1,))
    return jax.vmap(take)(starts).astype(jnp.int32)

  def sample(self, key: Array, batch_size: int) -> dict[str, Array]:
    """Training windows, plus where the evaluation hook reads its validation windows.

    Returns inputs/targets [batch, length] int32, lengths [batch] (all `length`), and
    eval_starts/eval_lengths [batch] for `validation_batch`.
    """
    k_train, k_val, k_len = jax.random.split(key, 3)
    n_train, n_val = self.train_data.shape[0], self.val_data.shape[0]
    starts = jax.random.randint(k_train, (batch_size,), 0, n_train - self.length)
    w = self._windows(self.train_data, starts)
    return {"inputs": w[:, :-1], "targets": w[:, 1:],
            "lengths": jnp.full((batch_size,), self.length, jnp.int32),
            "eval_starts": jax.random.randint(k_val, (batch_size,), 0, n_val - self.length),
            "eval_lengths": _draw_lengths(k_len, batch_size, self.min_length, self.length)}

  def validation_batch(self, batch: dict[str, Array]) -> dict[str, Array]:
    """Variable-length validation windows, padded with id 0 after each one's length."""
    w = self._windows(self.val_data, batch["eval_starts"])
    lengths = batch["eval_lengths"]
    valid = sequence_mask(lengths, self.length)
    return {"inputs": jnp.where(valid, w[:, :-1], 0), "targets": jnp.where(valid, w[:, 1:], 0),
            "lengths": lengths}

  def loss_and_metrics(self, logits: Array, batch: dict[str, Array]
                       ) -> tuple[Array, dict[str, Any]]:
    """logits: [batch, time, vocab] -> mean nats per real character, and bpc."""
    nll = per_char_nll(logits, batch["targets"], batch["lengths"])
    loss = jnp.sum(nll) / jnp.maximum(jnp.sum(batch["lengths"]), 1)
    return loss, {"loss": loss, "bpc": loss / math.log(2.0)}

  # -- optional hooks (rnnlab.tasks.base)

  def evaluate(self, model: Any, params: Any, batch: dict[str, Array]) -> dict[str, Array]:
    """Loss and bpc on the validation windows named by `batch` (see `validation_batch`)."""
    vb = self.validation_batch(batch)
    logits = model.apply({"params": params}, vb["inputs"], vb["lengths"])
    return self.loss_and_metrics(logits, vb)[1]
