r"""Encoder-decoder (sequence-to-sequence) models with and without attention, and greedy decoding.

The decoder's math is written once, as pure functions of one unbatched example (`decoder_step`,
`teacher_forced`, `greedy_decode`), calling the cell's own `step`; `Seq2Seq` (flax.linen) only
owns the parameters, runs `models.RecurrentEncoder` and vmaps these functions over the batch.

Encoder: source tokens x_1..x_S (steps j >= S_real are padding) -> embedding -> stacked, uni- or
bidirectional recurrent layers -> memory m_j = encoder output at step j, [S, M] with
M = directions * H (exactly zero at padding), and each layer's final carry.

Bridge (decoder layer k starts from encoder layer k): unidirectional, s_0 = the encoder's final
carry; bidirectional, for each carry part (LSTM: h and c),
    s_0 = tanh([carry_fwd ; carry_bwd] W_b + b_b),   W_b: [2H, H].
Without attention, s_0 is ALL the decoder knows of the source: the bottleneck.

Decoder step t = 1..T (y_0 = BOS; E: target embedding; q_{t-1}: top decoder layer output at t-1,
q_0 the h of its initial carry):
  none:      s_t = RNN(s_{t-1}, E y_{t-1});                          o_t = s_t
  additive (Bahdanau, Cho & Bengio 2015):
             e_tj = v . tanh(q_{t-1} W_q + m_j W_m)                   (W_q: [H, A], W_m: [M, A])
             a_t = softmax_j(e_t),  c_t = sum_j a_tj m_j
             s_t = RNN(s_{t-1}, [E y_{t-1} ; c_t]);                  o_t = [s_t ; c_t]
  dot (Luong, Pham & Manning 2015, "general" score):
             s_t = RNN(s_{t-1}, E y_{t-1})
             e_tj = s_t . (m_j W_m)                                   (W_m: [M, H])
             a_t = softmax_j(e_t),  c_t = sum_j a_tj m_j
             o_t = tanh([c_t ; s_t] W_c + b_c)                        (W_c: [M + H, H])
  logits_t = o_t W_o + b_o.
Masking: e_tj = -inf at padded source steps j, so a_tj = 0 there exactly (and an empty source
gives a = 0, c = 0).

Training uses teacher forcing (y_{t-1} is the reference token); evaluation uses greedy decoding
(y_{t-1} = argmax of the previous logits) for a fixed T steps: after the first EOS every token is
PAD and the state no longer matters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.core import cells
from rnnlab.core.mask import sequence_mask
from rnnlab.models import encoder

Array = jax.Array

ATTENTION_KINDS = ("none", "additive", "dot")
PAD, BOS, EOS = 0, 1, 2

_embed_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
_glorot = nn.initializers.glorot_uniform()


class DecoderState(NamedTuple):
  """Decoder carries (one per layer) and the top layer's last output q_{t-1} [H]."""

  carries: tuple[Any, ...]
  query: Array


class Memory(NamedTuple):
  """What attention reads, for one example: values m [S, M], precomputed keys [S, K], mask [S]."""

  values: Array
  keys: Array
  mask: Array


# ----------------------------------------------------------------------------- pure functions

def attend(kind: str, params: dict[str, Array], query: Array, memory: Memory
           ) -> tuple[Array, Array]:
  """Masked attention of one query over one source.

  kind: "additive" (keys = m W_m: [S, A]) or "dot" (keys = m W_m: [S, H]); query: [H].
  Returns (context c [M], weights a [S]); weights are exactly 0 at masked steps.
  """
  if kind == "additive":
    scores = jnp.tanh(memory.keys + query @ params["w_query"]) @ params["v"]
  elif kind == "dot":
    scores = memory.keys @ query
  else:
    raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {kind!r}")
  scores = jnp.where(memory.mask, scores, -jnp.inf)
  # An all-masked row would give NaN; its weights are defined as zero.
  safe = jnp.where(memory.mask.any(), scores, 0.0)
  weights = jnp.where(memory.mask, jax.nn.softmax(safe), 0.0)
  return weights @ memory.values, weights


def decoder_step(cell: cells.Cell, kind: str, params: dict[str, Any], state: DecoderState,
                 token: Array, memory: Memory) -> tuple[DecoderState, Array, Array]:
  """One decoder step for one example (equations in the module docstring).

  token: int scalar y_{t-1}. Returns (state, logits [vocab], attention weights [S]; zeros for
  kind "none").
  """
  x = params["embed"][token]
  weights = jnp.zeros(memory.mask.shape, jnp.float32)
  if kind == "additive":
    context, weights = attend(kind, params["attention"], state.query, memory)
    x = jnp.concatenate([x, context])
  carries = []
  for layer_params, carry in zip(params["layers"], state.carries):
    carry, x = cell.step(layer_params, carry, x)
    carries.append(carry)
  if kind == "additive":
    out = jnp.concatenate([x, context])
  elif kind == "dot":
    context, weights = attend(kind, params["attention"], x, memory)
    att = params["attention"]
    out = jnp.tanh(jnp.concatenate([context, x]) @ att["w_combine"] + att["b_combine"])
  else:
    out = x
  logits = out @ params["readout"]["w"] + params["readout"]["b"]
  return DecoderState(tuple(carries), x), logits, weights


def teacher_forced(cell: cells.Cell, kind: str, params: dict[str, Any], state: DecoderState,
                   decoder_inputs: Array, memory: Memory) -> tuple[Array, Array]:
  """Decoder over reference inputs y_0..y_{T-1} [T] -> (logits [T, vocab], weights [T, S])."""
  def body(s, token):
    s, logits, weights = decoder_step(cell, kind, params, s, token, memory)
    return s, (logits, weights)
  _, (logits, weights) = jax.lax.scan(body, state, decoder_inputs)
  return logits, weights


def greedy_decode(cell: cells.Cell, kind: str, params: dict[str, Any], state: DecoderState,
                  memory: Memory, max_len: int, bos: int = BOS, eos: int = EOS, pad: int = PAD
                  ) -> tuple[Array, Array]:
  """Greedy decoding of one example for `max_len` steps.

  Returns (tokens [max_len]: argmax tokens up to and including the first EOS, then `pad`;
           attention weights [max_len, S], zero after the first EOS).
  """
  def body(carry, _):
    s, prev, done = carry
    s, logits, weights = decoder_step(cell, kind, params, s, prev, memory)
    token = jnp.where(done, pad, jnp.argmax(logits).astype(jnp.int32))
    weights = jnp.where(done, 0.0, weights)
    return (s, token, done | (token == eos)), (token, weights)
  init = (state, jnp.asarray(bos, jnp.int32), jnp.asarray(False))
  _, (tokens, weights) = jax.lax.scan(body, init, None, length=max_len)
  return tokens, weights


def _carry_output(carry: Any, batch: int, hidden_size: int) -> Array:
  """The output-like part of a batch of carries (LSTM: h; a real [batch, H] array: itself; other
  carries: zeros) -> [batch, H]."""
  if isinstance(carry, cells.LSTMState):
    return carry.h
  if (isinstance(carry, jax.Array) and carry.shape == (batch, hidden_size)
      and not jnp.iscomplexobj(carry)):
    return carry
  return jnp.zeros((batch, hidden_size), jnp.float32)


# ----------------------------------------------------------------------------- the Module

class Seq2Seq(nn.Module):
  """Recurrent encoder-decoder; `attention` is "none", "additive" or "dot".

  Attributes:
    src_vocab, tgt_vocab: vocabulary sizes (target ids PAD=0, BOS=1, EOS=2 by default).
    max_target_len: decoding steps of `decode` (the target's padded time, EOS included).
    cell, hidden_size, num_layers, bidirectional, dropout_rate, cell_options: the encoder (see
      `models.RecurrentEncoder`); the decoder has `num_layers` unidirectional layers of the same
      cell and size.
    attention_size: A of the additive score.
    embed_size: source and target embedding size.
  """

  src_vocab: int
  tgt_vocab: int
  max_target_len: int
  cell: str = "lstm"
  hidden_size: int = 64
  num_layers: int = 1
  bidirectional: bool = True
  attention: str = "additive"
  attention_size: int = 64
  embed_size: int = 32
  dropout_rate: float = 0.0
  cell_options: tuple[tuple[str, Any], ...] = ()
  bos: int = BOS
  eos: int = EOS
  pad: int = PAD

  def _cell(self) -> cells.Cell:
    return encoder.make_cell(self.cell, self.cell_options)

  def setup(self) -> None:
    if self.attention not in ATTENTION_KINDS:
      raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {self.attention!r}")
    cell, H, E = self._cell(), self.hidden_size, self.embed_size
    M = H * (2 if self.bidirectional else 1)
    self.encoder = encoder.RecurrentEncoder(
        cell=self.cell, hidden_size=H, num_layers=self.num_layers,
        bidirectional=self.bidirectional, dropout_rate=self.dropout_rate,
        cell_options=self.cell_options)
    self.src_embed = self.param("src_embed", _embed_init, (self.src_vocab, E))
    self.tgt_embed = self.param("tgt_embed", _embed_init, (self.tgt_vocab, E))
    dec_in = E + (M if self.attention == "additive" else 0)
    self.decoder_layers = [
        self.param(f"decoder_layer{k}", lambda key, n=(dec_in if k == 0 else H):
                   cell.init(key, n, H)) for k in range(self.num_layers)]
    if self.bidirectional:
      parts = len(jax.tree.leaves(cell.initial_carry(H)))
      self.bridge = self.param("bridge", lambda key: [
          {"w": _glorot(k, (2 * H, H)), "b": jnp.zeros((H,))}
          for k in jax.random.split(key, parts)])
    if self.attention == "additive":
      A = self.attention_size
      self.attention_params = self.param("attention", lambda key: {
          "w_query": _glorot(jax.random.fold_in(key, 0), (H, A)),
          "w_memory": _glorot(jax.random.fold_in(key, 1), (M, A)),
          "v": _glorot(jax.random.fold_in(key, 2), (A, 1))[:, 0]})
      out = H + M
    elif self.attention == "dot":
      self.attention_params = self.param("attention", lambda key: {
          "w_memory": _glorot(jax.random.fold_in(key, 0), (M, H)),
          "w_combine": _glorot(jax.random.fold_in(key, 1), (M + H, H)),
          "b_combine": jnp.zeros((H,))})
      out = H
    else:
      out = H
    self.readout = self.param("readout", lambda key: {
        "w": _glorot(key, (out, self.tgt_vocab)), "b": jnp.zeros((self.tgt_vocab,))})

  def _decoder_params(self) -> dict[str, Any]:
    params = {"embed": self.tgt_embed, "layers": tuple(self.decoder_layers),
              "readout": self.readout}
    if self.attention != "none":
      params["attention"] = self.attention_params
    return params

  def encode(self, src: Array, src_lengths: Array | None = None, deterministic: bool = True
             ) -> tuple[DecoderState, Memory]:
    """src: [batch, S] int, src_lengths: [batch] -> (initial decoder state, memory), both with a
    leading [batch] axis (memory values [batch, S, M], keys [batch, S, K], mask [batch, S])."""
    batch, S = src.shape
    if src_lengths is None:
      src_lengths = jnp.full((batch,), S, jnp.int32)
    carries, values = self.encoder(jnp.take(self.src_embed, src, axis=0), src_lengths,
                                   deterministic)
    H = self.hidden_size
    init = []
    for layer_carries in carries:
      if self.bidirectional:
        fwd, bwd = layer_carries
        leaves_f, treedef = jax.tree.flatten(fwd)
        leaves_b = jax.tree.leaves(bwd)
        init.append(jax.tree.unflatten(treedef, [
            jnp.tanh(jnp.concatenate([f, b], -1) @ p["w"] + p["b"])
            for f, b, p in zip(leaves_f, leaves_b, self.bridge)]))
      else:
        init.append(layer_carries[0])
    query = _carry_output(init[-1], batch, H)
    mask = sequence_mask(src_lengths, S)
    if self.attention == "none":
      keys = jnp.zeros((batch, S, 1), values.dtype)
    else:
      keys = values @ self.attention_params["w_memory"]
    return DecoderState(tuple(init), query), Memory(values, keys, mask)

  def __call__(self, src: Array, src_lengths: Array | None = None,
               decoder_inputs: Array | None = None, deterministic: bool = True) -> Array:
    """Teacher-forced logits [batch, T, tgt_vocab] for decoder_inputs [batch, T] (BOS, y_1, ...);
    decoder_inputs None: one BOS step (used to initialise the parameters)."""
    if decoder_inputs is None:
      decoder_inputs = jnp.full((src.shape[0], 1), self.bos, jnp.int32)
    logits, _ = self.teacher_forced_with_attention(src, src_lengths, decoder_inputs,
                                                   deterministic)
    return logits

  def teacher_forced_with_attention(self, src: Array, src_lengths: Array | None,
                                    decoder_inputs: Array, deterministic: bool = True
                                    ) -> tuple[Array, Array]:
    """(logits [batch, T, tgt_vocab], attention weights [batch, T, S])."""
    state, memory = self.encode(src, src_lengths, deterministic)
    cell, params = self._cell(), self._decoder_params()
    fn = lambda s, y, m: teacher_forced(cell, self.attention, params, s, y, m)
    return jax.vmap(fn)(state, decoder_inputs, memory)

  def decode(self, src: Array, src_lengths: Array | None = None) -> tuple[Array, Array]:
    """Greedy decoding: (tokens [batch, max_target_len], attention weights [batch, T, S])."""
    state, memory = self.encode(src, src_lengths, True)
    cell, params = self._cell(), self._decoder_params()
    fn = lambda s, m: greedy_decode(cell, self.attention, params, s, m,
                                    self.max_target_len, self.bos, self.eos, self.pad)
    return jax.vmap(fn)(state, memory)
