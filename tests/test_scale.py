"""Scale: data parallelism over a device mesh, and several processes (hosts) with jax.distributed.

Several devices are forced on CPU in a subprocess
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`), since a process fixes its device count when
JAX starts. The checks: the same numbers on 4 devices
as on 1, the batch generated inside the step really split along the `data` axis (on the batch axis,
not the [seeds] axis that vmap adds), a batch size the devices cannot split rejected before
compilation, and a real two-process run on localhost that writes its metrics once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from rnnlab.training import train
from tests.conftest import ROOT

_NUM_STEPS = 8


def _run_python(code: str, devices: int, timeout: int = 300) -> dict:
  """Runs `code` in a fresh CPU-only interpreter with `devices` forced host devices; returns the
  JSON object it prints on its last stdout line."""
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


# One interpreter with 4 devices runs every single-host check (JAX start-up costs seconds).
_FOUR_DEVICES = """
import json, sys
import jax
import numpy as np
from rnnlab.training import device_mesh
from rnnlab.training import train
from rnnlab.errors import ConfigError
from tests.conftest import tiny_config

out = {"device_count": jax.device_count()}
config = tiny_config(num_seeds=2, num_steps=%(steps)d)

# Record the sharding XLA actually gives every batch array inside the compiled step.
seen = {}
original = device_mesh.shard_batch
def spy(batch, mesh):
  batch = original(batch, mesh)
  for name, x in batch.items():
    jax.debug.inspect_array_sharding(
        x, callback=lambda s, name=name, ndim=x.ndim: seen.setdefault(
            name, {"spec": [a for a in s.spec], "traced_ndim": ndim,
                   "mesh": dict(s.mesh.shape)}))
  return batch
device_mesh.shard_batch = spy

def losses(trainer):
  state, rows = trainer.init(), []
  for _ in range(%(steps)d):
    state, metrics = trainer.train_step(state)
    rows.append(np.asarray(metrics["loss"]).tolist())
  return state, rows

four = train.Trainer(config)
out["mesh"] = dict(four.mesh.shape)
state, out["losses_4"] = losses(four)
out["batch_sharding"] = seen
out["state_replicated"] = all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state))
# Gradients of the batch shards must be summed across devices: an all-reduce in the program.
hlo = four.train_step.lower(state).compile().as_text()
out["all_reduce"] = "all-reduce" in hlo

one = train.Trainer(config, mesh=device_mesh.make_mesh(jax.devices()[:1]))
out["losses_1"] = losses(one)[1]

try:
  train.Trainer(tiny_config(batch_size=6))
except ConfigError as e:
  out["indivisible"] = str(e)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def four_devices() -> dict:
  return _run_python(_FOUR_DEVICES % {"steps": _NUM_STEPS}, devices=4)


@pytest.mark.slow
def test_four_devices_match_one(four_devices):
  assert four_devices["device_count"] == 4 and four_devices["mesh"] == {"data": 4}
  l4, l1 = four_devices["losses_4"], four_devices["losses_1"]
  assert len(l4) == _NUM_STEPS and all(len(per_seed) == 2 for per_seed in l4)
  flat = lambda rows: [x for per_seed in rows for x in per_seed]
  assert flat(l4) == pytest.approx(flat(l1), rel=1e-5, abs=1e-6)
  assert l4[-1] != l4[0]  # it trained: equal numbers are not a frozen state


@pytest.mark.slow
def test_batch_is_sharded_on_its_batch_axis(four_devices):
  sharding = four_devices["batch_sharding"]
  assert set(sharding) >= {"inputs", "targets", "lengths"}
  for name, info in sharding.items():
    assert info["mesh"] == {"data": 4}, name
    assert info["spec"].count("data") == 1, (name, info["spec"])
  # The copy task's inputs and targets are [batch, time] per seed: traced as [seeds, batch, time]
  # under vmap (data on axis 1, the seeds axis unsplit) and [batch, time] inside lax.map (the CPU
  # default: axis 0), so `data` is on the axis before time either way; an array that is the same
  # for every seed (the copy task's fixed lengths) keeps [batch, ...], axis 0.
  for name in ("inputs", "targets"):
    info = sharding[name]
    assert info["spec"].index("data") == info["traced_ndim"] - 2, (name, info)
    assert all(axis is None for axis in info["spec"][:info["traced_ndim"] - 2]), (name, info)
  assert sharding["lengths"]["spec"] == ["data"]
  assert four_devices["state_replicated"]


@pytest.mark.slow
def test_batch_not_divisible_by_devices(four_devices):
  message = four_devices["indivisible"]
  assert "config.train.batch_size=6 is not divisible by the number of devices (4)" in message
  assert "multiple of 4" in message


# ----------------------------------------------------------------------------- several processes

_MP_FLAGS = ["--config=configs/copy.py", "--config.model.hidden_size=8",
             "--config.train.batch_size=8", "--config.train.num_steps=6",
             "--config.train.log_every=3", "--config.train.eval_every=3",
             "--config.train.checkpoint_every=3", "--config.train.eval_batches=1",
             "--config.train.eval_batch_size=8", "--config.task.length=4",
             "--config.train.stop_when_solved=False"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_localhost(tmp_path, tmp_path_factory):
  """Two processes x 2 CPU devices (a 4-device global mesh), coordinated over 127.0.0.1: both exit
  0, metrics are written once (by process 0), and the numbers are the 1-device run's."""
  workdir = str(tmp_path / "run")
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "experiments.train", *_MP_FLAGS, f"--workdir={workdir}",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=300))
  finally:
    for p in procs:  # a process whose peer died waits at a barrier: never leave it behind
      if p.poll() is None:
        p.kill()
        p.wait()
  for i, (p, (_, err)) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {i}:\n{err[-3000:]}"
  rows = train.read_metrics(workdir)
  assert [(r["step"], "loss" in r) for r in rows] == [
      (3, True), (3, False), (6, True), (6, False)]  # once each, not once per process
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["steps"] == 6

  # The same run on one device (a separate process, sharing the other tests' compiled programs).
  one = str(tmp_path / "one")
  cache = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  result = subprocess.run([sys.executable, "-m", "experiments.train", *_MP_FLAGS,
                           f"--workdir={one}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  reference = train.read_metrics(one)
  assert len(reference) == len(rows)
  for got, want in zip(rows, reference):
    for key in ("loss", "accuracy", "eval_loss", "eval_accuracy"):
      if key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-4), (got["step"], key)
