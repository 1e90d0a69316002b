"""More bad input at the entry points (see tests/test_bad_input.py): config files that cannot give
a config, overrides that would replace a section, seeds PRNGKey would alias, generate's chart
flags, and torch files that are not state_dicts. Each gets one `error: ` line that says what is
wrong and what to do, exit code 1, no traceback, and nothing written.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import file_bytes
from tests.test_bad_input import _TINY, _assert_one_clear_error, _run, finished  # noqa: F401,F811

_TEXT = "The blue ship sails at dawn. The red ship waits in the harbour.\n" * 60


@pytest.fixture(scope="module")
def bad_configs(tmp_path_factory):
  """Config files that fail in each way ml_collections reports as a traceback (or too late)."""
  folder = tmp_path_factory.mktemp("configs")
  files = {
      "syntax.py": "def get_config(:\n  pass\n",
      "noget.py": "VALUE = 1\n",
      "raises.py": "def get_config():\n  raise RuntimeError('the grid is not ready')\n",
      "keyerror.py": "def get_config():\n  return {}['model']\n",
      "imports.py": "import no_such_module_anywhere\n",
      "nodict.py": "def get_config():\n  return None\n",
      "sweep_raises.py": ("from configs.copy import get_config\n\n"
                          "def get_sweep():\n  raise ValueError('no grid for you')\n"),
  }
  for name, text in files.items():
    (folder / name).write_text(text)
  return folder


def _config_cases(folder) -> list[tuple[str, list[str]]]:
  """(--config value, fragments of the one error line)."""
  return [
      (f"{folder}/missing.py", [f"--config={folder}/missing.py", "does not exist",
                                "give a config file such as configs/copy.py"]),
      (str(folder), ["is a directory", "give a config file"]),
      (f"{folder}/syntax.py", ["syntax error in", "syntax.py at line 1", "fix the file"]),
      (f"{folder}/noget.py", ["noget.py defines no get_config()", "see configs/copy.py"]),
      (f"{folder}/raises.py", ["get_config() of", "raised RuntimeError: the grid is not ready",
                               "fix the file"]),
      (f"{folder}/keyerror.py", ["get_config() of", "raised KeyError: 'model'"]),
      (f"{folder}/imports.py", ["fails to load", "ModuleNotFoundError", "no_such_module"]),
      (f"{folder}/nodict.py", ["get_config() returned NoneType, not a ml_collections.ConfigDict"]),
      ("configs/copy.py:long", ["configs/copy.py's get_config() takes no variant",
                                "drop ':long'"]),
      ("configs/compare.py:nosuch", ["get_config('nosuch') of configs/compare.py raised "
                                     "ValueError: unknown variant 'nosuch'", "use '' or 'quick'",
                                     "check the variant"]),
  ]


@pytest.mark.parametrize("module", [pytest.param("experiments.train", marks=pytest.mark.slow),
                                    "experiments.sweep", "experiments.compare",
                                    "experiments.import_weights"])
def test_bad_config_files_at_every_entry_point(env, bad_configs, tmp_path, module):
  workdir = tmp_path / "run"
  extra = {"experiments.import_weights": ["--from=torch", f"--checkpoint={tmp_path}/w.pt"],
           "experiments.compare": [f"--results_dir={tmp_path}/results"]}.get(module, [])
  cases = _config_cases(bad_configs)
  # Every case at train; the others load the file through the same check: a few each.
  for spec, fragments in cases if module == "experiments.train" else cases[::4]:
    result = _run(env, module, f"--config={spec}", f"--workdir={workdir}", *extra)
    _assert_one_clear_error(result, *fragments)
    assert not os.path.exists(workdir) and not os.path.exists(tmp_path / "results"), spec


def test_sweep_whose_get_sweep_raises(env, bad_configs, tmp_path):
  result = _run(env, "experiments.sweep", f"--config={bad_configs}/sweep_raises.py",
                f"--workdir={tmp_path}/sweep")
  _assert_one_clear_error(result, "get_sweep() of", "raised ValueError: no grid for you",
                          "fix the file")
  assert not os.path.exists(tmp_path / "sweep")


@pytest.mark.parametrize("flags,fragments", [
    # ml_collections would replace config.model by {'cell': 'gru'}: hidden_size and the rest gone.
    (["--config.model={'cell': 'gru'}"],
     ["--config.model=... would replace the whole section config.model", "one at a time",
      "--config.model.cell=gru"]),
    # ... and then fail on the key override as an "unknown key" that the config does have.
    (["--config.model={'cell': 'gru', 'hidden_size': 8}", "--config.model.num_layers=2"],
     ["would replace the whole section config.model",
      "--config.model.cell=gru --config.model.hidden_size=8"]),
    (["--config.model.cell=gru", "--config.train={'batch_size': 4}"],
     ["would replace the whole section config.train", "--config.train.batch_size=4"]),
    (["--config.model=lstm"], ["would replace the whole section config.model",
                               "--config.model.KEY=VALUE"]),
    (["--config.model.hiden_size=8"], ["unknown config key 'model.hiden_size'",
                                       "did you mean model.hidden_size", "configs/base.py"]),
    (["--config.modle.cell=gru"], ["unknown config key 'modle.cell'", "did you mean model?"]),
    (["--config.seed=-1"], ["config.seed must be an integer in [0, 2**32), got -1"]),
    (["--config.seed=4294967296"], ["config.seed must be an integer in [0, 2**32)",
                                    "got 4294967296"]),
])
def test_bad_overrides_leave_the_run_untouched(env, finished, flags, fragments):
  before = file_bytes(finished)
  result = _run(env, "experiments.train", *_TINY, *flags, f"--workdir={finished}")
  _assert_one_clear_error(result, *fragments)
  assert file_bytes(finished) == before


def test_sweep_of_seeds_out_of_range(env, tmp_path):
  result = _run(env, "experiments.sweep", *_TINY, f"--workdir={tmp_path}/sweep",
                "--sweep=seed=0,4294967296")
  _assert_one_clear_error(result, "config.seed must be an integer in [0, 2**32)")
  assert not os.path.exists(tmp_path / "sweep" / "sweep.md")


# ----------------------------------------------------------------------------- generate

@pytest.fixture(scope="module")
def charlm_run(env, tmp_path_factory) -> str:
  folder = tmp_path_factory.mktemp("charlm")
  corpus = folder / "ships.txt"
  corpus.write_text(_TEXT)
  workdir = str(folder / "run")
  result = _run(env, "experiments.train", "--config=configs/charlm.py",
                f"--config.task.path={corpus}", "--config.task.length=16",
                "--config.task.min_length=4",
                "--config.model.hidden_size=16", "--config.model.embed_size=8",
                "--config.train.batch_size=8", "--config.train.num_steps=2",
                "--config.train.warmup_steps=1", "--config.train.log_every=1",
                "--config.train.eval_every=2", "--config.train.eval_batches=1",
                "--config.train.eval_batch_size=8", "--config.train.checkpoint_every=2",
                f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.mark.slow
def test_generate_to_an_unwritable_plot_prints_the_text_first(env, charlm_run, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  before = file_bytes(charlm_run)
  for plot in (f"{blocker}/chart.png", str(tmp_path), f"{tmp_path}/chart.nosuchformat"):
    result = _run(env, "experiments.generate", f"--workdir={charlm_run}", "--prompt=The ",
                  "--length=12", f"--plot={plot}")
    _assert_one_clear_error(result, f"cannot write the next-character chart to '{plot}'",
                            "give a path in a writable folder ending in .png")
    assert result.stdout.startswith("The ") and len(result.stdout) == 4 + 12 + 1, plot
  assert sorted(os.listdir(tmp_path)) == ["a_file"]  # no partial or temporary file
  assert file_bytes(charlm_run) == before


@pytest.mark.parametrize("top_k", ["0", "-3"])
@pytest.mark.slow
def test_generate_refuses_a_top_k_below_one(env, charlm_run, tmp_path, top_k):
  result = _run(env, "experiments.generate", f"--workdir={charlm_run}", "--length=5",
                f"--top_k={top_k}", f"--plot={tmp_path}/chart.png")
  _assert_one_clear_error(result, "--top_k must be >= 1", f"got {top_k}")
  assert result.stdout == "" and not os.listdir(tmp_path)


# ----------------------------------------------------------------------------- import_weights

@pytest.mark.slow
def test_torch_files_that_are_not_state_dicts(env, tmp_path):
  torch = pytest.importorskip("torch")
  whole = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
  torch.save(whole, tmp_path / "module.pt")  # a pickled nn.Module, not a state_dict
  torch.save({"rnn.weight_ih_l0": torch.zeros(32, 16)}, tmp_path / "whole.pt")
  data = (tmp_path / "whole.pt").read_bytes()
  (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
  (tmp_path / "notes.pt").write_text("these are my notes, not weights\n")
  cases = {"module.pt": ["holds pickled Python objects, not only tensors",
                         "torch.save(model.state_dict(), 'model.pt')"],
           "truncated.pt": ["truncated, damaged or not written by torch.save",
                            "copy it again"],
           "notes.pt": ["truncated, damaged or not written by torch.save"]}
  for name, fragments in cases.items():
    workdir = tmp_path / f"run_{name}"
    result = _run(env, "experiments.import_weights", "--from=torch",
                  f"--checkpoint={tmp_path / name}", "--config=configs/copy.py",
                  f"--workdir={workdir}")
    _assert_one_clear_error(result, f"'{tmp_path / name}'", *fragments)
    assert "weights_only=False" not in result.stderr and "\x1b[" not in result.stderr
    assert not os.path.exists(workdir), name


@pytest.mark.parametrize("module, args", [
    ("experiments.compare", ["--config=configs/compare.py:quick", "--workdir={tmp}/study"]),
    ("experiments.compare", ["--config=configs/compare.py:quick", "--workdir={tmp}/study",
                             "--from_workdirs"]),
    ("experiments.seq2seq_study", ["--workdir_root={tmp}/study"]),
    ("experiments.gradient_flow", ["--config=configs/adding.py", "--train_dir={tmp}/study"]),
    ("experiments.seeds_speedup", []),
    ("experiments.workers_speedup", []),
    ("experiments.benchmark", ["--quick"]),
])
def test_an_unwritable_results_dir_is_refused_before_any_work(env, tmp_path, module, args):
  """A --results_dir that cannot hold the report is refused at once (was: a study trained for
  hours, then failed with a traceback when it wrote its report)."""
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  result = _run(env, module, *[a.format(tmp=tmp_path) for a in args],
                f"--results_dir={blocker}/reports")
  _assert_one_clear_error(result, f"cannot write to results_dir '{blocker}/reports'",
                          "Choose a writable --results_dir.")
  assert sorted(os.listdir(tmp_path)) == ["a_file"]  # nothing trained, nothing written
