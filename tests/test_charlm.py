"""Character-level LM: corpus and vocabulary, windows, masking, bad files, reload and generation."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import charlm as charlm_config
from rnnlab import tasks
from rnnlab.analysis import sampling
from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.tasks.charlm import BUILTIN_CORPUS, CharLMTask, per_char_nll
from rnnlab.training import evaluation, train
from tests.conftest import run_entry

_TEXT = ("The blue ship sails at dawn. The red ship waits in the harbour.\n"
         "A ship is blue when the sea is calm; the sea is calm when the wind sleeps.\n") * 40


def _tiny_config(path, **train_kw):
  config = charlm_config.get_config()
  config.task.path = str(path)
  config.task.length = 16
  config.task.min_length = 4
  config.model.hidden_size = 16
  config.model.embed_size = 8
  config.train.batch_size = 8
  config.train.num_steps = 20
  config.train.warmup_steps = 5
  config.train.log_every = 10
  config.train.eval_every = 10
  config.train.eval_batches = 2
  config.train.eval_batch_size = 8
  config.train.checkpoint_every = 10
  for k, v in train_kw.items():
    config.train[k] = v
  return config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp("corpus") / "ships.txt"
  path.write_text(_TEXT, encoding="utf-8")
  return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
  """A tiny charlm run (20 steps), shared by the reload and generation tests."""
  workdir = tmp_path_factory.mktemp("charlm_run")
  train.train_and_evaluate(_tiny_config(corpus, num_steps=10, log_every=5), str(workdir))
  return workdir


def test_builtin_corpus_needs_no_download():
  task = tasks.get(charlm_config.get_config().task)
  assert task.path == BUILTIN_CORPUS
  n_train, n_val = task.train_data.shape[0], task.val_data.shape[0]
  assert n_train > 300_000 and n_val == pytest.approx(0.1 * (n_train + n_val), abs=1)
  assert 60 <= task.vocab.size <= 256
  assert set("The blue ship") <= set(task.vocab.chars)
  # The unigram entropy is below the uniform log2(V) and far above 0.
  assert 3.0 < task.baseline < math.log2(task.vocab.size)
  assert task.vocab.decode(task.vocab.encode("The blue ship")) == "The blue ship"


def test_windows_come_from_the_right_split(corpus):
  task = CharLMTask(str(corpus), length=16, min_length=4)
  b = jax.tree.map(np.asarray, jax.jit(task.sample, static_argnums=1)(jax.random.PRNGKey(0), 32))
  assert b["inputs"].shape == b["targets"].shape == (32, 16)
  np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
  n_val = task.val_data.shape[0]
  train_text, val_text = _TEXT[:len(_TEXT) - n_val], _TEXT[len(_TEXT) - n_val:]
  for x, y in zip(b["inputs"], b["targets"]):
    assert task.vocab.decode(np.append(x, y[-1])) in train_text
  v = jax.tree.map(np.asarray, jax.jit(lambda k: task.validation_batch(task.sample(k, 64)))(
      jax.random.PRNGKey(1)))
  assert v["lengths"].min() >= 4 and v["lengths"].max() <= 16 and len(set(v["lengths"])) > 3
  for x, y, n in zip(v["inputs"], v["targets"], v["lengths"]):
    assert task.vocab.decode(np.append(x[:n], y[n - 1])) in val_text
    assert not x[n:].any() and not y[n:].any()   # padded with id 0


@pytest.mark.slow
def test_padding_does_not_change_per_char_loss(corpus):
  task = CharLMTask(str(corpus), length=16, min_length=3)
  model = train.build_model(_tiny_config(corpus), task)
  # Eager dispatch is slow on a busy CPU: every step below is jitted.
  batch = jax.jit(lambda k: task.validation_batch(task.sample(k, 4)))(jax.random.PRNGKey(2))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), batch["inputs"], batch["lengths"])["params"]
  nll = jax.jit(per_char_nll)
  apply = jax.jit(lambda x, n: model.apply({"params": params}, x, n))
  lengths = np.asarray(batch["lengths"])
  assert lengths.min() < 16
  # Fill the padding with random characters: the masked loss must not see them.
  valid = jnp.arange(16)[None, :] < batch["lengths"][:, None]
  noise = jax.random.randint(jax.random.PRNGKey(3), batch["inputs"].shape, 0, task.vocab.size)
  garbage = dict(batch, inputs=jnp.where(valid, batch["inputs"], noise),
                 targets=jnp.where(valid, batch["targets"], noise))
  per_char = []
  for b in (batch, garbage):
    logits = apply(b["inputs"], b["lengths"])
    per_char.append(np.asarray(nll(logits, b["targets"], b["lengths"])))
  np.testing.assert_array_equal(per_char[0], per_char[1])
  # Each sequence alone, unpadded, gives the same per-character loss.
  for i, n in enumerate(lengths):
    x, y = batch["inputs"][i:i + 1, :n], batch["targets"][i:i + 1, :n]
    alone = nll(apply(x, None), y, jnp.array([n]))
    np.testing.assert_allclose(per_char[0][i, :n], np.asarray(alone)[0], rtol=1e-5, atol=1e-6)
    assert not per_char[0][i, n:].any()
  loss, metrics = jax.jit(task.loss_and_metrics)(apply(garbage["inputs"], garbage["lengths"]),
                                                 garbage)
  assert float(loss) == pytest.approx(per_char[0].sum() / lengths.sum(), rel=1e-5)
  assert float(metrics["bpc"]) == pytest.approx(float(loss) / math.log(2), rel=1e-6)


@pytest.mark.parametrize("kind,message", [
    ("missing", "no such file"),
    ("empty", "the file is empty"),
    ("binary", "looks binary"),
    ("latin1", "is not UTF-8 text"),
    ("directory", "is not a regular file"),
    ("short", "a window needs config.task.length"),
])
def test_bad_files_are_clear_config_errors(tmp_path, kind, message):
  path = tmp_path / f"{kind}.txt"
  if kind == "empty":
    path.write_bytes(b"")
  elif kind == "binary":
    path.write_bytes(b"PK\x03\x04\x00\x00binary\x00data")
  elif kind == "latin1":
    path.write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 10)
  elif kind == "directory":
    path.mkdir()
  elif kind == "short":
    path.write_text("too short\n")
  config = _tiny_config(path)
  with pytest.raises(ConfigError, match=message) as info:
    train.Trainer(config)
  assert str(path) in str(info.value)


def test_bidirectional_language_model_is_refused(corpus):
  config = _tiny_config(corpus)
  config.model.bidirectional = True
  with pytest.raises(ConfigError, match="bidirectional"):
    train.Trainer(config)


def test_step_by_step_equals_the_trained_model(trained):
  """The generator's carried state gives exactly the logits of the model run on the whole text."""
  lm, task, step = sampling.load_language_model(str(trained))
  assert step == 10
  trainer, state = evaluation.restore_run(str(trained))
  params = jax.tree.map(lambda x: x[0], state.params)
  tokens = jnp.asarray(task.vocab.encode("The blue ship sails"))
  full = trainer.model.apply({"params": params}, tokens[None], None)[0]
  # Read in two pieces, carrying the state in between.
  s, first = sampling.advance(lm, sampling.initial_state(lm), tokens[:7])
  _, second = sampling.advance(lm, s, tokens[7:])
  np.testing.assert_allclose(np.concatenate([first, second]), full, rtol=1e-5, atol=1e-5)
  bpc = sampling.stream_bits_per_char(lm, task.val_data)
  assert 0.0 < bpc < 8.0


@pytest.mark.parametrize("residual,norm", [
    (True, "layer"), pytest.param(True, "rms", marks=pytest.mark.slow),
    pytest.param(False, "layer", marks=pytest.mark.slow),
    pytest.param(True, "none", marks=pytest.mark.slow)])
def test_step_by_step_equals_the_deep_model(corpus, residual, norm):
  """The deep encoder (input_proj, norm{k}, norm_out) read one piece at a time with the carried
  state gives the model's own per-step logits. Every parameter is perturbed, so a norm that is
  skipped, misplaced or given another layer's params (all start as the identity) would show."""
  config = _tiny_config(corpus)
  config.model.num_layers = 2
  config.model.residual = residual
  config.model.norm = norm
  task = CharLMTask(str(corpus), length=16, min_length=4)
  model = train.build_model(config, task)
  tokens = jnp.asarray(task.vocab.encode("The blue ship sails"))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), tokens[None], None)["params"]
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(treedef, [x + 0.3 * jax.random.normal(k, x.shape, x.dtype)
                                        for x, k in zip(leaves, keys)])
  full = jax.jit(lambda p, x: model.apply({"params": p}, x, None))(params, tokens[None])[0]
  lm = sampling.language_model(config, params)
  s, first = sampling.advance(lm, sampling.initial_state(lm), tokens[:7])
  _, second = sampling.advance(lm, s, tokens[7:])
  np.testing.assert_allclose(np.concatenate([first, second]), full, rtol=1e-4, atol=1e-4)


def test_generate_from_the_workdir(trained, tmp_path):
  plot = tmp_path / "bar.png"
  out = sampling.generate_from_workdir(str(trained), "The blue ship", length=40,
                                       temperature=0.8, seed=1, plot_path=str(plot))
  assert out.text.startswith("The blue ship") and len(out.continuation) == 40
  assert set(out.continuation) <= set(out.vocab)
  assert out.next_char_probs.shape == (len(out.vocab),)
  assert out.next_char_probs.sum() == pytest.approx(1.0, abs=1e-5)
  assert plot.stat().st_size > 5000
  again = sampling.generate_from_workdir(str(trained), "The blue ship", 40, 0.8, seed=1)
  assert again.continuation == out.continuation
  greedy = [sampling.generate_from_workdir(str(trained), "The blue ship", 40, 0.0, seed=s)
            for s in (0, 1)]
  assert greedy[0].continuation == greedy[1].continuation
  # Greedy: the first character is the bar chart's argmax.
  assert greedy[0].continuation[0] == out.vocab[int(np.argmax(out.next_char_probs))]
  with pytest.raises(RnnlabError, match="not in the vocabulary"):
    sampling.generate_from_workdir(str(trained), "The \u2603 ship", 5)
  with pytest.raises(RnnlabError, match="must not be empty"):
    sampling.generate_from_workdir(str(trained), "", 5)


def test_generate_entry_point(trained, tmp_path):
  plot = tmp_path / "next_char.png"
  result = run_entry("experiments.generate", f"--workdir={trained}", "--prompt=The blue ship",
                     "--length=30", "--temperature=0.8", f"--plot={plot}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.startswith("The blue ship") and len(result.stdout.rstrip("\n")) >= 13 + 20
  assert os.path.getsize(plot) > 5000
  bad = run_entry("experiments.generate", f"--workdir={trained}", "--prompt=Zebra \u00e9",
                  "--length=5")
  assert bad.returncode == 1 and "not in the vocabulary" in bad.stderr
  assert "Traceback" not in bad.stderr


def test_train_entry_point_on_a_missing_file(tmp_path):
  result = run_entry("experiments.train", "--config=configs/charlm.py", f"--workdir={tmp_path}/w",
                     f"--config.task.path={tmp_path}/nope.txt")
  assert result.returncode == 1
  assert "nope.txt" in result.stderr and "no such file" in result.stderr
  assert "Traceback" not in result.stderr
