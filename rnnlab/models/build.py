"""The one place that turns a task's `ModelSpec` and `config.model` into a flax Module."""

from __future__ import annotations

from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.models import encoder, seq2seq
from rnnlab.tasks.base import ModelSpec


def build_model(model: Any, spec: ModelSpec, task_name: str = "") -> Any:
  """The Module that `spec` asks for, configured by `model` (a `config.model` section).

  "rnn": embedding (token inputs) or features -> RecurrentEncoder -> readout per `spec.readout`;
  "seq2seq": `seq2seq.Seq2Seq` with `model.attention`.
  """
  if spec.architecture == "seq2seq":
    return _seq2seq(model, spec, task_name)
  if spec.architecture != "rnn":
    raise ValueError(f"unknown model architecture {spec.architecture!r} (rnn | seq2seq)")
  if spec.causal:
    if model.bidirectional:
      raise ConfigError(f"config.model.bidirectional=True is not allowed for task {task_name}: a "
                        "language model must not read the characters it predicts")
    enc = encoder.encoder_from_config(model, bidirectional=False)
    embed_size = model.embed_size
  else:
    enc = encoder.encoder_from_config(model)
    embed_size = model.get("embed_size", 16)
  return encoder.RNNModel(enc, out_features=spec.out_features, readout=spec.readout,
                          vocab_size=spec.vocab_size, embed_size=embed_size)


def _seq2seq(model: Any, spec: ModelSpec, task_name: str) -> seq2seq.Seq2Seq:
  attention = model.get("attention", "none")
  if attention not in seq2seq.ATTENTION_KINDS:
    raise ConfigError(f"config.model.attention={attention!r} is not allowed; choose one of: "
                      f"{', '.join(seq2seq.ATTENTION_KINDS)}")
  if model.get("residual", False) or model.get("norm", "none") != "none":
    raise ConfigError("config.model.residual and config.model.norm are not offered for task "
                      f"{task_name} (its decoder is a plain stack); set residual=False, norm=none")
  bos, eos, pad = spec.special_tokens
  return seq2seq.Seq2Seq(
      src_vocab=spec.vocab_size, tgt_vocab=spec.out_features,
      max_target_len=spec.max_target_len, cell=model.cell, hidden_size=model.hidden_size,
      num_layers=model.num_layers, bidirectional=model.bidirectional, attention=attention,
      attention_size=model.get("attention_size", model.hidden_size), embed_size=model.embed_size,
      dropout_rate=model.dropout_rate, cell_options=encoder.cell_options_from_config(model),
      bos=bos, eos=eos, pad=pad)
