"""Seq2seq translation: the generated language, shapes, masking, greedy decoding, training."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import seq2seq as seq2seq_config
from rnnlab import tasks
from rnnlab.errors import ConfigError
from rnnlab.models import seq2seq
from rnnlab.studies import seq2seq_study
from rnnlab.tasks import translation
from rnnlab.tasks.translation import TranslationTask, decode_source, decode_target, number_to_words
from rnnlab.training import evaluation, train
from tests.conftest import committed_results_status


def _tiny_config(attention="additive", **train_kw):
  config = seq2seq_config.get_config()
  config.task.length = 6
  config.model.attention = attention
  config.model.hidden_size = 8
  config.model.embed_size = 6
  config.model.attention_size = 8
  config.train.batch_size = 12
  config.train.num_steps = 10
  config.train.warmup_steps = 2
  config.train.log_every = 5
  config.train.eval_every = 10
  config.train.eval_batches = 1
  config.train.eval_batch_size = 12
  config.train.checkpoint_every = 10
  for k, v in train_kw.items():
    config.train[k] = v
  return config


# One small model per attention kind, compiled once and shared by the tests below: "none" with a
# unidirectional GRU encoder (an array carry, no bridge), the others bidirectional LSTMs.
_KINDS = {"none": (False, "gru"), "additive": (True, "lstm"), "dot": (True, "lstm")}


@pytest.fixture(scope="module", params=list(_KINDS))
def built(request):
  attention = request.param
  bidirectional, cell = _KINDS[attention]
  model = seq2seq.Seq2Seq(src_vocab=len(translation.SOURCE_VOCAB),
                          tgt_vocab=len(translation.TARGET_VOCAB), max_target_len=11, cell=cell,
                          hidden_size=8, bidirectional=bidirectional, attention=attention,
                          attention_size=6, embed_size=5)
  task = TranslationTask(length=5, min_length=1)  # target time 11
  batch = task.sample(jax.random.PRNGKey(1), 10)
  params = jax.jit(model.init)(jax.random.PRNGKey(2), batch["inputs"], batch["lengths"])["params"]

  @jax.jit
  def run(p, src, decoder_inputs):
    logits, weights = model.apply({"params": p}, src, batch["lengths"], decoder_inputs,
                                  method="teacher_forced_with_attention")
    tokens, decode_weights = model.apply({"params": p}, src, batch["lengths"], method="decode")
    return logits, weights, tokens, decode_weights

  return attention, bidirectional, batch, params, run


def test_generated_language_matches_the_reference():
  task = TranslationTask(length=18, min_length=1)
  b = jax.tree.map(np.asarray, jax.jit(task.sample, static_argnums=1)(jax.random.PRNGKey(0), 180))
  assert b["inputs"].shape == (180, 18) and b["targets"].shape == (180, task.target_time)
  # Stratified lengths: each of 1..18 exactly 10 times.
  np.testing.assert_array_equal(np.bincount(b["lengths"])[1:], 10)
  for x, n, y, m, d in zip(b["inputs"], b["lengths"], b["targets"], b["target_lengths"],
                           b["decoder_inputs"]):
    digits = decode_source(x)
    assert len(digits) == n and (n == 1 or digits[0] != "0") and not x[n:].any()
    assert decode_target(y) == " ".join(number_to_words(digits))
    assert y[m - 1] == translation.EOS and not y[m:].any()
    assert d[0] == translation.BOS
    np.testing.assert_array_equal(d[1:m], y[:m - 1])
    assert not d[m:].any()
  # Hand-checked readings, the zero case included.
  for digits, words in [("0", "zero"), ("7", "seven"), ("10", "ten"),
                        ("115", "one hundred fifteen"), ("3004", "three thousand four"), ("1000010", "one million ten"),
                        ("90000000000", "ninety billion"),
                        ("999999999999999999", "nine hundred ninety nine quadrillion nine "
                         "hundred ninety nine trillion nine hundred ninety nine billion nine "
                         "hundred ninety nine million nine hundred ninety nine thousand nine "
                         "hundred ninety nine")]:
    ids = jnp.asarray([[int(c) for c in digits.ljust(18, "0")]])
    targets, _ = task._words(ids, jnp.asarray([len(digits)]))
    assert decode_target(targets[0]) == words == " ".join(number_to_words(digits))


def test_shapes_and_attention_weights(built):
  attention, bidirectional, batch, params, run = built
  assert ("attention" in params) == (attention != "none")
  assert ("bridge" in params) == bidirectional
  logits, weights, tokens, decode_weights = map(
      np.asarray, run(params, batch["inputs"], batch["decoder_inputs"]))
  assert logits.shape == (10, 11, len(translation.TARGET_VOCAB)) and weights.shape == (10, 11, 5)
  assert tokens.shape == (10, 11) and decode_weights.shape == (10, 11, 5)
  pad = np.arange(5)[None, None, :] >= np.asarray(batch["lengths"])[:, None, None]
  if attention == "none":
    assert not weights.any()
  else:  # weights sum to one over the real source steps and are exactly zero at padding
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  assert not weights[np.broadcast_to(pad, weights.shape)].any()


def test_padded_source_positions_change_nothing(built):
  _, _, batch, params, run = built
  # Random digits where the source is padding: no output may change (attention is masked there,
  # the encoder's outputs are zero there and its final carry is the one at the last real step).
  pad = jnp.arange(5)[None, :] >= batch["lengths"][:, None]
  noise = jax.random.randint(jax.random.PRNGKey(3), batch["inputs"].shape, 1, 11)
  noisy = jnp.where(pad, noise, batch["inputs"])
  assert (noisy != batch["inputs"]).any()
  for a, b in zip(run(params, batch["inputs"], batch["decoder_inputs"]),
                  run(params, noisy, batch["decoder_inputs"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_attend_on_an_empty_source_is_zero_and_differentiable():
  memory = seq2seq.Memory(jnp.ones((4, 3)), jnp.ones((4, 5)), jnp.zeros((4,), bool))
  params = {"w_query": jnp.ones((2, 5)), "v": jnp.ones((5,))}
  attend = lambda q: seq2seq.attend("additive", params, q, memory)
  context, weights = jax.jit(attend)(jnp.ones((2,)))
  assert not context.any() and not weights.any()
  grads = jax.jit(jax.grad(lambda q: attend(q)[0].sum()))(jnp.ones(2))
  assert np.all(np.isfinite(grads))


def test_greedy_decoding_feeds_back_its_argmax_and_pads_after_eos(built):
  _, _, batch, params, run = built
  # Make EOS likely enough to appear mid-sequence in some rows.
  params = jax.tree.map(lambda x: x, params)
  params["readout"]["b"] = params["readout"]["b"].at[translation.EOS].add(0.35)
  tokens = np.asarray(run(params, batch["inputs"], batch["decoder_inputs"])[2])
  replay_in = np.concatenate([np.full((10, 1), translation.BOS), tokens[:, :-1]], 1)
  replay = np.argmax(np.asarray(run(params, batch["inputs"], replay_in)[0]), -1)
  for row, again in zip(tokens, replay):
    eos = np.flatnonzero(row == translation.EOS)
    end = eos[0] + 1 if len(eos) else len(row)
    np.testing.assert_array_equal(row[:end], again[:end])  # each token is the argmax given the past
    assert not row[end:].any()                              # PAD after the first EOS
  # A decoder that always prefers EOS stops at once.
  params["readout"]["b"] = params["readout"]["b"].at[translation.EOS].set(1e4)
  tokens = np.asarray(run(params, batch["inputs"], batch["decoder_inputs"])[2])
  assert (tokens[:, 0] == translation.EOS).all() and not tokens[:, 1:].any()


def test_evaluation_metrics_of_a_perfect_and_a_wrong_decoder():
  task = TranslationTask(length=4, min_length=1)
  batch = jax.jit(task.sample, static_argnums=1)(jax.random.PRNGKey(6), 8)

  class Oracle:  # stands in for the model: decodes the reference, or the reference shifted
    def __init__(self, shift):
      self.shift = shift

    def apply(self, variables, src, lengths, decoder_inputs=None, deterministic=True, rngs=None,
              method=None):
      if method == "decode":
        t = batch["targets"]
        wrong = jnp.where(jnp.arange(8)[:, None] < self.shift, jnp.roll(t, 1, axis=1), t)
        return wrong, None
      return 20.0 * jax.nn.one_hot(batch["targets"], len(translation.TARGET_VOCAB))

  perfect = jax.jit(lambda b: task.evaluate(Oracle(0), None, b))(batch)
  assert float(perfect["exact_match"]) == 1.0 and float(perfect["token_accuracy"]) == 1.0
  assert all(float(perfect[f"exact_match_len{d:02d}"]) == 1.0 for d in range(1, 5))
  half = jax.jit(lambda b: task.evaluate(Oracle(4), None, b))(batch)  # rows 0..3 wrong
  assert float(half["exact_match"]) == 0.5
  assert all(float(half[f"exact_match_len{d:02d}"]) == 0.5 for d in range(1, 5))


def test_bad_attention_is_a_config_error():
  with pytest.raises(ConfigError, match="config.model.attention='luong'"):
    train.Trainer(_tiny_config("luong"))


@pytest.mark.slow
def test_train_then_restore_and_evaluate(tmp_path):
  config = _tiny_config("dot")
  summary = train.train_and_evaluate(config, str(tmp_path))
  final = summary["final"]
  for key in ["eval_loss", "eval_token_accuracy", "eval_exact_match"] + [
      f"eval_exact_match_len{d:02d}" for d in range(1, 7)]:
    assert 0.0 <= final[key] <= (1.0 if "loss" not in key else 10.0), key
  rows = [r for r in train.read_metrics(str(tmp_path)) if "loss" in r]
  assert rows[-1]["step"] == 10 and "token_accuracy" in rows[-1]
  again = evaluation.evaluate_workdir(str(tmp_path))
  assert again["exact_match"] == pytest.approx(final["eval_exact_match"])
  assert again["token_accuracy"] == pytest.approx(final["eval_token_accuracy"])
  assert tasks.get(config.task).target_time == 11


@pytest.mark.slow
def test_study_reports_into_its_workdir_root(tmp_path):
  """The study's table, CSV and plots go to workdir_root unless results_dir is named, and its
  numbers are the evaluated ones; experiments/results is left as it was."""
  before = committed_results_status()
  config = _tiny_config(num_steps=2, eval_every=2, checkpoint_every=2)
  results = seq2seq_study.run_study(config, str(tmp_path), ["none", "dot"], None, eval_batches=1,
                                    machine="test", command="pytest")
  assert committed_results_status() == before
  for name in ("seq2seq.md", "seq2seq_bottleneck.csv", "seq2seq_bottleneck.png",
               "seq2seq_attention.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  with open(tmp_path / "seq2seq_bottleneck.csv") as f:
    rows = list(csv.DictReader(f))
  lengths = translation.TranslationTask.from_config(config.task).source_lengths
  assert len(rows) == 2 * (len(lengths) + 1)
  for row in rows:
    key = "exact_match" if row["source_length"] == "all" else (
        f"exact_match_len{int(row['source_length']):02d}")
    assert float(row["exact_match"]) == pytest.approx(results[row["attention"]][key], abs=5e-5)
  with pytest.raises(ConfigError, match="^variants=bad: each must be one of"):
    seq2seq_study.run_study(config, str(tmp_path), ["bad"], None, 1, "test", "pytest")
