"""Bad input at every entry point: one clear message (what is wrong, what to do), exit code 1, no
Python traceback, and the files of a finished run in the same workdir byte-for-byte untouched.

The cases that tests/test_train.py already runs at the entry point (unknown cell, negative hidden
size, unknown key, `num_steps=abc`, evaluate on an empty workdir), and tests/test_charlm.py's bad
text files, are not repeated here, except as re-runs into a finished workdir, which those files do
not check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from rnnlab.errors import RnnlabError
from rnnlab.training import checkpoint, train
from tests.conftest import ROOT, file_bytes

# The shapes of tests/test_fault_tolerance.py's runs, so a session compiles them once.
_TINY = ["--config=configs/copy.py", "--config.model.hidden_size=8",
         "--config.train.batch_size=8", "--config.task.length=4",
         "--config.train.eval_batches=1", "--config.train.eval_batch_size=8",
         "--config.train.stop_when_solved=False", "--config.train.num_steps=10",
         "--config.train.log_every=5", "--config.train.eval_every=5",
         "--config.train.checkpoint_every=5"]


def _run(env: dict[str, str], module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def finished(env, tmp_path_factory) -> str:
  """A finished 10-step copy run; every bad re-run below goes into it."""
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  result = _run(env, "experiments.train", *_TINY, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _assert_one_clear_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
  assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in errors[0], (fragment, errors[0])


@pytest.mark.parametrize("flags,fragments", [
    (["--config.task.name=sorting"],
     ["config.task.name='sorting' is not allowed", "choose one of:", "copy"]),
    (["--config.task.length=0"], ["config.task.length must be a positive integer, got 0"]),
    pytest.param(["--config.train.batch_size=0"],
                 ["config.train.batch_size must be a positive integer"], marks=pytest.mark.slow),
    (["--config.model.no_such_key=1"], ["unknown config key", "no_such_key", "configs/base.py"]),
    pytest.param(["--config.train.num_steps=abc"],
                 ["--config.train.num_steps=abc", "invalid literal"], marks=pytest.mark.slow),
    (["--config.model.hidden_size=16"],
     ["holds a run with a different config", "config.model.hidden_size: saved 8, now 16",
      "Use a new --workdir"]),
    pytest.param(["--config.train.learning_rate=1e9"],
     ["holds a run with a different config", "config.train.learning_rate"],
                 marks=pytest.mark.slow),
    (["--config.train.grad_clip=nan"], ["config.train.grad_clip must be a finite number, got nan"]),
    pytest.param(["--config.train.learning_rate=inf"],
     ["config.train.learning_rate must be a finite number, got inf"],
                 marks=pytest.mark.slow),
    (["--config.train.num_steps=5"],
     ["already trained to step 10, past config.train.num_steps=5", "config.json is left as it is",
      "--config.train.num_steps=10 (or more)"]),
    (["--num_processes=2"], ["--num_processes and --process_id need --coordinator_address"]),
    pytest.param(["--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=2"],
     ["0 <= --process_id < --num_processes", "process_id=2"],
                 marks=pytest.mark.slow),
    pytest.param(["--coordinator_address=localhost", "--num_processes=2", "--process_id=0"],
     ["--coordinator_address='localhost' must be HOST:PORT"],
                 marks=pytest.mark.slow),
])
def test_bad_train_rerun_leaves_the_run_untouched(env, finished, flags, fragments):
  before = file_bytes(finished)
  result = _run(env, "experiments.train", *_TINY, *flags, f"--workdir={finished}")
  _assert_one_clear_error(result, *fragments)
  assert file_bytes(finished) == before


def test_charlm_binary_file_into_a_finished_run(env, finished, tmp_path):
  binary = tmp_path / "corpus.txt"
  binary.write_bytes(b"PK\x03\x04\x00\x00not text\x00")
  before = file_bytes(finished)
  result = _run(env, "experiments.train", "--config=configs/charlm.py",
                f"--config.task.path={binary}", f"--workdir={finished}")
  _assert_one_clear_error(result, str(binary), "looks binary", "give a UTF-8 text file")
  assert file_bytes(finished) == before


@pytest.mark.parametrize("spec,fragments", [
    ("model.cell", ["bad sweep term 'model.cell': no '='", "syntax: key=v1,v2;key2=v3"]),
    ("model.nope=1,2", ["unknown config key 'model.nope' in the sweep", "it has: activation"]),
    ("train.learning_rate=1e-3,abc", ["bad value 'abc' for 'train.learning_rate'",
                                      "expected a float"]),
])
def test_sweep_syntax_errors_leave_the_run_untouched(env, finished, spec, fragments):
  before = file_bytes(finished)
  result = _run(env, "experiments.sweep", "--config=configs/copy.py", f"--workdir={finished}",
                f"--sweep={spec}")
  _assert_one_clear_error(result, *fragments)
  assert file_bytes(finished) == before


@pytest.mark.parametrize("module,flags,fragments", [
    ("experiments.evaluate", ["--eval_batches=0"], ["--eval_batches must be >= 1, got 0"]),
    ("experiments.generate", [], ["holds a 'copy' run", "needs a charlm run"]),
])
def test_bad_reader_flags_leave_the_run_untouched(env, finished, module, flags, fragments):
  before = file_bytes(finished)
  result = _run(env, module, f"--workdir={finished}", *flags)
  _assert_one_clear_error(result, *fragments)
  assert file_bytes(finished) == before


def test_evaluate_missing_workdir(env, tmp_path):
  result = _run(env, "experiments.evaluate", f"--workdir={tmp_path}/nope")
  _assert_one_clear_error(result, f"workdir '{tmp_path}/nope' does not exist")


def test_workdir_that_is_a_regular_file(env, tmp_path):
  path = tmp_path / "a_file"
  path.write_text("not a run")
  for module, args in (("experiments.train", _TINY), ("experiments.evaluate", ())):
    result = _run(env, module, *args, f"--workdir={path}")
    _assert_one_clear_error(result, f"--workdir '{path}' is a regular file")
    assert path.read_text() == "not a run"


def test_config_too_large_for_memory_is_refused_before_anything_is_written(env, tmp_path):
  workdir = str(tmp_path / "run")
  result = subprocess.run(
      [sys.executable, "-m", "experiments.train", *_TINY, "--config.model.hidden_size=100000",
       f"--workdir={workdir}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  _assert_one_clear_error(result, "this config needs about", "GiB is available on this host",
                          "lower config.model.hidden_size (now 100000)")
  assert not os.path.exists(workdir)


@pytest.mark.slow
def test_evaluate_a_one_device_run_on_three_devices(env, finished):
  """batch 8 does not split over 3 devices: evaluation uses 2 of them, to the same numbers."""
  one = _run(env, "experiments.evaluate", f"--workdir={finished}")
  three = subprocess.run(
      [sys.executable, "-m", "experiments.evaluate", f"--workdir={finished}"], cwd=ROOT,
      env=dict(env, XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} "
               "--xla_force_host_platform_device_count=3"),
      capture_output=True, text=True, timeout=300)
  assert one.returncode == 0 and three.returncode == 0, three.stderr[-3000:]
  assert "Evaluating on 2 of 3 devices" in three.stderr
  assert np.allclose(list(json.loads(three.stdout).values())[2:],
                     list(json.loads(one.stdout).values())[2:], rtol=1e-5)


def _copy_with_config(finished: str, tmp_path, edit) -> str:
  """A copy of the finished run whose config.json text is `edit(text)`."""
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  path = os.path.join(workdir, train.CONFIG_FILE)
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(edit(text))
  return workdir


def test_evaluate_with_a_checkpoint_of_another_model_size(env, finished, tmp_path):
  def bigger(text):
    saved = json.loads(text)
    saved["model"]["hidden_size"] = 16
    return json.dumps(saved)

  workdir = _copy_with_config(finished, tmp_path, bigger)
  before = file_bytes(workdir)
  result = _run(env, "experiments.evaluate", f"--workdir={workdir}")
  _assert_one_clear_error(result, "the checkpoint at step 10", "does not match the model",
                          "params.encoder.layer0_fwd", "Use the config the run was made with")
  assert file_bytes(workdir) == before


def test_damaged_checkpoint_names_the_step_to_delete(env, finished, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  step_dir = os.path.join(workdir, checkpoint.CHECKPOINT_DIR, "10")
  for root, _, names in os.walk(step_dir):
    if os.path.basename(root) == "d":  # the array data files of orbax's OCDBT store
      for name in names:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  before = file_bytes(workdir)
  result = _run(env, "experiments.evaluate", f"--workdir={workdir}")
  _assert_one_clear_error(result, "the checkpoint at step 10", "cannot be read",
                          f"Delete {step_dir} to fall back to the previous checkpoint")
  assert file_bytes(workdir) == before


def test_damaged_config_json(env, finished, tmp_path):
  workdir = _copy_with_config(finished, tmp_path, lambda text: text[: len(text) // 2])
  before = file_bytes(workdir)
  result = _run(env, "experiments.train", *_TINY, f"--workdir={workdir}")
  _assert_one_clear_error(result, f"{workdir}/config.json is not a valid rnnlab config",
                          "start a new --workdir")
  assert file_bytes(workdir) == before  # not overwritten with the new config
  with pytest.raises(RnnlabError, match="is not a valid rnnlab config"):
    train.load_config(workdir)  # what experiments.evaluate and generate read


@pytest.mark.parametrize("text,fragment", [
    ("[1, 2]", "(a JSON list, not an object of sections task, model, train)"),
    ('{"model": {"cell": "lstm"}, "seed": 0}', "(no section task, train)"),
])
def test_config_json_that_is_not_a_config(env, finished, tmp_path, text, fragment):
  workdir = _copy_with_config(finished, tmp_path, lambda _: text)
  before = file_bytes(workdir)
  for module, args in (("experiments.train", _TINY), ("experiments.evaluate", ())):
    result = _run(env, module, *args, f"--workdir={workdir}")
    _assert_one_clear_error(result, f"{workdir}/config.json is not a valid rnnlab config",
                            fragment)
  assert file_bytes(workdir) == before


@pytest.mark.slow
def test_exploding_learning_rate_stops_with_the_step_and_a_remedy(env, tmp_path):
  workdir = str(tmp_path / "run")
  result = _run(env, "experiments.train", "--config=configs/adding.py", f"--workdir={workdir}",
                "--config.model.cell=irnn", "--config.model.hidden_size=8",
                "--config.task.length=10", "--config.train.batch_size=8",
                "--config.train.learning_rate=1e9", "--config.train.grad_clip=0",
                "--config.train.num_steps=40", "--config.train.log_every=1",
                "--config.train.checkpoint_every=1", "--config.train.eval_batches=1",
                "--config.train.eval_batch_size=8")
  _assert_one_clear_error(result, "became non-finite (NaN/inf) at step",
                          "Lower config.train.learning_rate", "on_nonfinite=skip")
  # Nothing non-finite was logged or saved.
  rows = train.read_metrics(workdir)
  assert rows and all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
  config = train.load_config(workdir)
  ckpt = checkpoint.Checkpointer(workdir, read_only=True)
  try:
    if ckpt.latest_step() is not None:
      state = ckpt.restore(train.Trainer(config).abstract_state())
      assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
  finally:
    ckpt.close()
