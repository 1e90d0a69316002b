"""import_weights: a torch / flax model's weights become an rnnlab workdir that evaluates as is.

The torch model is nn.Embedding -> nn.LSTM (2 layers) -> nn.Linear for the copy task's vocabulary,
with PyTorch's own (non-zero) bias init. The restored rnnlab model's logits on a padded batch with
unsorted lengths equal torch's on the real steps (torch runs a packed sequence).
"""

import json
import os

import jax
import numpy as np
import pytest
import torch

from rnnlab import tasks
from rnnlab.errors import RnnlabError
from rnnlab.interop import importing
from rnnlab.training import evaluation, train
from tests.conftest import run_entry, tiny_config

H, EMBED, T = 8, 16, 7
LENGTHS = np.array([7, 3, 5])  # unsorted, one full-length sequence


def _config(bidirectional, **model):
  config = tiny_config("copy", "lstm", num_steps=2, log_every=1, eval_every=2,
                       checkpoint_every=2)
  config.model.num_layers = 2
  config.model.bidirectional = bidirectional
  config.model.hidden_size = H
  config.model.embed_size = EMBED
  for k, v in model.items():
    config.model[k] = v
  return config


class TorchModel(torch.nn.Module):
  """The torch twin of RNNModel: embed -> rnn -> readout, names as import_weights reads them."""

  def __init__(self, vocab, bidirectional, num_layers=2, hidden=H):
    super().__init__()
    self.embed = torch.nn.Embedding(vocab, EMBED)
    self.rnn = torch.nn.LSTM(EMBED, hidden, num_layers=num_layers, batch_first=True,
                             bidirectional=bidirectional)
    self.readout = torch.nn.Linear(hidden * (2 if bidirectional else 1), vocab)

  def forward(self, tokens, lengths):
    packed = torch.nn.utils.rnn.pack_padded_sequence(self.embed(tokens), lengths,
                                                     batch_first=True, enforce_sorted=False)
    ys, _ = self.rnn(packed)
    ys, _ = torch.nn.utils.rnn.pad_packed_sequence(ys, batch_first=True,
                                                   total_length=tokens.shape[1])
    return self.readout(ys)


def _vocab(config):
  return tasks.get(config.task).model_spec.vocab_size


def _save_torch(path, config, **kwargs):
  torch.manual_seed(0)
  model = TorchModel(_vocab(config), config.model.bidirectional, **kwargs).eval()
  torch.save(model.state_dict(), path)
  return model


def _batch(vocab):
  tokens = np.random.default_rng(0).integers(0, vocab, size=(len(LENGTHS), T))
  return tokens.astype(np.int32), np.arange(T)[None, :] < LENGTHS[:, None]


def _assert_logits_match(workdir, torch_model, vocab):
  """The workdir's restored model (seed 0) gives torch's logits on the real steps."""
  trainer, state = evaluation.restore_run(workdir)
  params = jax.tree.map(lambda x: x[0], state.params)
  tokens, valid = _batch(vocab)
  ours = np.asarray(trainer.model.apply({"params": params}, tokens, LENGTHS))
  with torch.no_grad():
    theirs = torch_model(torch.from_numpy(tokens).long(), torch.from_numpy(LENGTHS)).numpy()
  np.testing.assert_allclose(ours[valid], theirs[valid], rtol=1e-5, atol=1e-5)
  assert np.all(ours[~valid] == 0.0)  # rnnlab zeroes padded steps
  return trainer, state


@pytest.mark.slow
def test_torch_import_evaluates_and_matches(tmp_path):
  config = _config(bidirectional=True)
  torch_model = _save_torch(tmp_path / "model.pt", config)
  workdir = str(tmp_path / "run")
  report = importing.import_weights("torch", str(tmp_path / "model.pt"), config, workdir)
  assert sorted(report["imported"]) == ["embed", "encoder", "readout"]
  assert report["initialised"] == [] and report["step"] == 0
  assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json"]

  result = evaluation.evaluate_workdir(workdir)
  assert result["step"] == 0 and np.isfinite(result["loss"])
  _, state = _assert_logits_match(workdir, torch_model, _vocab(config))
  assert int(state.step[0]) == 0

  # The flax form of the same params (an .npz of "/"-joined paths) imports to the same model.
  params = jax.tree.map(lambda x: np.asarray(x[0]), state.params)
  flat = {jax.tree_util.keystr(p, simple=True, separator="/"): v
          for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  np.savez(tmp_path / "params.npz", **flat)
  report = importing.import_weights("flax", str(tmp_path / "params.npz"), config,
                                    str(tmp_path / "flax_run"))
  assert sorted(report["imported"]) == ["embed", "encoder", "readout"]
  _assert_logits_match(str(tmp_path / "flax_run"), torch_model, _vocab(config))
  # ... and so does flax's msgpack of it, wrapped in {"params": ...} as flax variables are.
  from flax import serialization  # pylint: disable=g-import-not-at-top
  (tmp_path / "params.msgpack").write_bytes(serialization.msgpack_serialize({"params": params}))
  from_msgpack, _ = importing.load_flax(str(tmp_path / "params.msgpack"), config)
  jax.tree.map(np.testing.assert_array_equal, from_msgpack, params)

  # experiments.train fine-tunes from the imported step-0 checkpoint.
  summary = train.train_and_evaluate(config, workdir)
  assert summary["steps"] == 2
  assert [r["step"] for r in train.read_metrics(workdir) if "loss" in r] == [1, 2]


@pytest.mark.slow
def test_entry_point_and_seeded_parts(tmp_path):
  config = _config(bidirectional=False)
  torch_model = _save_torch(tmp_path / "model.pt", config)
  # Only the RNN and the readout: the embedding comes from the seed (and the log says so).
  sd = {k: v for k, v in torch_model.state_dict().items() if not k.startswith("embed.")}
  torch.save(sd, tmp_path / "no_embed.pt")
  proc = run_entry("experiments.import_weights", "--from=torch",
                   f"--checkpoint={tmp_path / 'no_embed.pt'}", "--config=configs/copy.py",
                   f"--workdir={tmp_path / 'run'}", "--config.task.length=5",
                   "--config.model.num_layers=2", f"--config.model.hidden_size={H}",
                   f"--config.model.embed_size={EMBED}")
  assert proc.returncode == 0, proc.stderr
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["initialised"] == ["embed"] and sorted(report["imported"]) == [
      "encoder", "readout"]
  assert "embed: not in" in proc.stderr and "initialised from config.seed=0" in proc.stderr

  trainer, state = evaluation.restore_run(str(tmp_path / "run"))
  params = jax.tree.map(lambda x: x[0], state.params)
  # Put the seeded embedding into torch: then the two models agree everywhere.
  with torch.no_grad():
    torch_model.embed.weight.copy_(torch.from_numpy(np.array(params["embed"]["embedding"])))
  _assert_logits_match(str(tmp_path / "run"), torch_model, _vocab(trainer.config))


def test_mismatch_errors(tmp_path):
  config = _config(bidirectional=False)
  _save_torch(tmp_path / "small.pt", _config(bidirectional=True), num_layers=1, hidden=4)
  with pytest.raises(RnnlabError) as e:
    importing.import_weights("torch", str(tmp_path / "small.pt"), config, str(tmp_path / "a"))
  message = str(e.value)
  for part in ("config.model.num_layers=2", "bidirectional, config.model.bidirectional=False",
               "hidden size is 4, config.model.hidden_size=8"):
    assert part in message
  assert not os.path.exists(tmp_path / "a")  # nothing written before the checks pass

  model = _save_torch(tmp_path / "ok.pt", config)
  with pytest.raises(RnnlabError, match="config.model.cell='gru'"):
    importing.import_weights("torch", str(tmp_path / "ok.pt"), _config(False, cell="gru"),
                             str(tmp_path / "b"))
  with pytest.raises(RnnlabError, match=r"embed\['embedding'\] has shape \(10, 16\)"):
    importing.import_weights("torch", str(tmp_path / "ok.pt"), _config(False, embed_size=4),
                             str(tmp_path / "c"))
  torch.save(dict(model.state_dict(), **{"head.weight": torch.zeros(2)}), tmp_path / "extra.pt")
  with pytest.raises(RnnlabError, match="map to no part of the model: head.weight"):
    importing.import_weights("torch", str(tmp_path / "extra.pt"), config, str(tmp_path / "d"))
  adding = _config(False)
  adding.task.name = "adding"
  with pytest.raises(RnnlabError, match="has embed weights, but this config's model has no emb"):
    importing.import_weights("torch", str(tmp_path / "ok.pt"), adding, str(tmp_path / "e"))
  with pytest.raises(RnnlabError, match="is not a file"):
    importing.import_weights("torch", str(tmp_path / "missing.pt"), config, str(tmp_path / "f"))


@pytest.mark.slow  # Keras' import and model building take ~20 s on a small CPU
def test_keras_import_matches(tmp_path):
  os.environ.setdefault("KERAS_BACKEND", "jax")
  import keras  # pylint: disable=import-outside-toplevel  # after KERAS_BACKEND is set
  config = _config(bidirectional=True, cell="gru")
  vocab = _vocab(config)
  tokens = keras.Input((None,), dtype="int32")
  x = keras.layers.Embedding(vocab, EMBED)(tokens)
  for _ in range(2):
    x = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True))(x)
  model = keras.Model(tokens, keras.layers.Dense(vocab)(x))
  rng = np.random.default_rng(0)
  for w in model.weights:  # non-zero biases in both GRU bias rows
    w.assign((0.5 * rng.normal(size=w.shape)).astype("float32"))
  model.save(tmp_path / "model.keras")
  report = importing.import_weights("keras", str(tmp_path / "model.keras"), config,
                                    str(tmp_path / "run"))
  assert sorted(report["imported"]) == ["embed", "encoder", "readout"]
  trainer, state = evaluation.restore_run(str(tmp_path / "run"))
  params = jax.tree.map(lambda a: a[0], state.params)
  full = np.random.default_rng(1).integers(0, vocab, (3, T)).astype(np.int32)
  ours = trainer.model.apply({"params": params}, full, np.full((3,), T))
  np.testing.assert_allclose(np.asarray(ours), np.asarray(model(full)), rtol=1e-5, atol=1e-5)
