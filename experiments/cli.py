"""What every absl entry point shares: quiet third-party logs and user errors without tracebacks."""

from __future__ import annotations

import ast
import copy
import difflib
import importlib.util
import inspect
import logging as py_logging
import os
import re
import sys
import types
from typing import Any, Callable, Mapping, Sequence

from absl import app, flags, logging
from ml_collections import config_dict
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from rnnlab.errors import ConfigError, Interrupted, RnnlabError


class _DropLibraryChatter(py_logging.Filter):
  """Keeps orbax's per-save INFO lines out of the training log (warnings still show), and the
  tracebacks of its background threads' and futures' errors (a full disk logs one per thread):
  their message stays, and the run ends with rnnlab's one-line error naming the directory."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    if "xla_bridge" in record.pathname and "Unable to initialize backend" in record.getMessage():
      return False  # JAX probing for TPU/GPU plugins this machine has not got
    if record.name == "asyncio":  # orbax's abandoned futures: "exception was never retrieved"
      record.exc_info, record.exc_text = None, None
      return True
    if "orbax" not in record.pathname:
      return True
    record.exc_info, record.exc_text = None, None
    return record.levelno >= py_logging.WARNING


_SAFE_CPU_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def use_safe_cpu_scheduler() -> None:
  """Adds an XLA flag that avoids a CPU deadlock; call before the first JAX computation.

  On a 2-core machine, jaxlib 0.10's XLA CPU runtime can hang for ever (0% CPU) in the jitted
  init of a bidirectional LSTM with several seeds and hidden >= 48: the orthogonal initialiser's
  batched QR kernels run concurrently on the intra-op pool and each waits for pool threads the
  other holds. XLA's non-concurrency-optimised scheduler runs them one after another.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {_SAFE_CPU_FLAG}".strip()


# launch.Training's and launch.Resources' fields -> the flags that set them.
LAUNCH_FLAGS = {"launcher": "launcher", "time_min": "slurm_time_min",
                "cpus_per_task": "slurm_cpus_per_task", "gpus_per_node": "slurm_gpus_per_node",
                "array_parallelism": "slurm_array_parallelism", "mem_gb": "slurm_mem_gb",
                "local_parallelism": "local_parallelism", "parallel": "parallel",
                "num_shards": "num_shards", "shard_index": "shard_index"}


def define_launch_flags(points: str = "points") -> Callable[[], Any]:
  """Defines --launcher, --parallel, --num_shards, --shard_index and the submitit resource flags
  of an entry point that trains sweep points (`points`: what the help calls them); returns a
  function giving the `launch.Training` they set."""
  from rnnlab.studies import launch  # pylint: disable=import-outside-toplevel

  flags.DEFINE_integer("num_shards", 1, f"Split the {points} into this many shards.")
  flags.DEFINE_integer("shard_index", 0, f"Train the {points} of this shard only.")

  flags.DEFINE_enum(
      "launcher", "inline", list(launch.LAUNCHERS),
      "inline: train the points here, in --parallel worker processes; local: as local "
      "processes through submitit; slurm: a Slurm job array through submitit (one task per "
      "unfinished point).")
  flags.DEFINE_integer("parallel", os.cpu_count() or 1, "--launcher=inline: worker processes "
                       "training the points (default: CPU cores).")
  flags.DEFINE_string("slurm_partition", None, "Slurm partition (default: the cluster's).")
  flags.DEFINE_integer("slurm_time_min", 60, "Time limit of one job, minutes (slurm and local).")
  flags.DEFINE_integer("slurm_cpus_per_task", 4, "CPU cores per Slurm task.")
  flags.DEFINE_integer("slurm_gpus_per_node", 0, "GPUs per Slurm task.")
  flags.DEFINE_float("slurm_mem_gb", None, "Memory per Slurm task, GB (default: the "
                     "partition's).")
  flags.DEFINE_integer("slurm_array_parallelism", 16, "At most this many Slurm array tasks at "
                       "once.")
  flags.DEFINE_integer("local_parallelism", 2, "--launcher=local: at most this many processes "
                       "(the points are split among them).")

  def training() -> launch.Training:
    f = flags.FLAGS
    resources = launch.Resources(
        partition=f.slurm_partition, time_min=f.slurm_time_min,
        cpus_per_task=f.slurm_cpus_per_task, gpus_per_node=f.slurm_gpus_per_node,
        mem_gb=f.slurm_mem_gb, array_parallelism=f.slurm_array_parallelism,
        local_parallelism=f.local_parallelism)
    return launch.Training(f.launcher, f.parallel, resources, f.num_shards, f.shard_index)
  return training


def as_flags(error: RnnlabError, names: Sequence[str] | Mapping[str, str]) -> RnnlabError:
  """`error` with each function argument in `names` written as the flag that sets it: the library
  names its arguments, a user of an entry point knows the flags.

  `names` holds arguments whose flag has the same name (`eval_batches` -> `--eval_batches`), or
  maps each argument to its flag (`{"source": "from"}`: `source` -> `--from`). A name inside a
  config key (`config.train.eval_batches`), a path (`/tmp/path/x`) or already a flag is left
  alone.
  """
  pairs = names.items() if isinstance(names, Mapping) else ((name, name) for name in names)
  message = str(error)
  for argument, flag in pairs:
    # Not inside a config key, a flag or a path: only the word itself.
    message = re.sub(rf"(?<![\w./-]){re.escape(argument)}(?![\w/-])", f"--{flag}", message)
  renamed = copy.copy(error)  # the same error, attributes kept (`Interrupted.exit_code`)
  renamed.args = (message,)
  return renamed


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)`, printing RnnlabError as one line on stderr with exit code 1; a stop
  the user asked for (`Interrupted`: Ctrl-C or SIGTERM, at a step boundary) prints its line and
  exits 130 (143 for SIGTERM); a Ctrl-C that aborts at once (a second one, or one while
  nothing trains here) says how to resume."""
  use_safe_cpu_scheduler()

  def wrapped(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(_DropLibraryChatter())
    sys.unraisablehook = _quiet_late_callbacks
    try:
      main(argv)
    except Interrupted as e:
      print(e, file=sys.stderr)
      sys.exit(e.exit_code)
    except RnnlabError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt:
      print("aborted by Ctrl-C; run the same command to resume from the latest checkpoints",
            file=sys.stderr)
      sys.exit(130)

  app.run(wrapped, flags_parser=_parse_flags)


def _quiet_late_callbacks(unraisable: Any) -> None:
  """Drops the leftovers of an orbax save or restore that failed (a damaged checkpoint, a full
  disk): "Event loop is closed" from tensorstore I/O callbacks landing after orbax gave up, and
  the errors of its abandoned coroutines. The failure itself is reported by the normal path (one
  error line); any other unraisable exception is printed as usual."""
  value, obj = unraisable.exc_value, unraisable.object
  if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
    return
  code = getattr(obj, "cr_code", None)
  if code is not None and "orbax" in code.co_filename:
    return
  sys.__unraisablehook__(unraisable)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad config file, an override of an unknown key or one that
  replaces a whole section reported in one line.

  ml_collections loads the config file while absl parses the flags, before `main`, and reports a
  failure there as a traceback (or not until the config is first read); so each `--config=FILE`
  given is loaded and its `get_config` called here first, with the errors a user can act on.
  """
  try:
    for name, spec in _config_files_given(argv):
      _check_overrides(argv, name, _checked_config(name, spec))
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}\nPass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
    sys.exit(1)
  except (AttributeError, KeyError) as e:
    # ml_collections raises these for `--config.a.b=...` when `a.b` is not a key of the config.
    key = str(e).strip("'\" ")
    overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    print(f"error: unknown config key '{key}' (overrides given: {' '.join(overrides)}); the "
          "config file defines every allowed key (see configs/base.py)", file=sys.stderr)
    sys.exit(1)


def _config_files_given(argv: Sequence[str]) -> list[tuple[str, str]]:
  """(flag name, FILE[:variant]) of every config-file flag given as --name=SPEC or --name SPEC."""
  given = []
  for name in flags.FLAGS:
    if not isinstance(flags.FLAGS[name].parser, ConfigFileFlagParser):
      continue
    for i, arg in enumerate(argv[1:], 1):
      if re.fullmatch(rf"--?{re.escape(name)}=.*", arg):
        given.append((name, arg.split("=", 1)[1]))
      elif re.fullmatch(rf"--?{re.escape(name)}", arg) and i + 1 < len(argv):
        given.append((name, argv[i + 1]))
  return given


def load_config_module(name: str, spec: str) -> types.ModuleType:
  """The module of config file `spec` (FILE[:variant]) given as --name; ConfigError in one line
  when it is missing, is not Python, or fails to import."""
  path = spec.split(":", 1)[0]
  flag = f"--{name}={spec}"
  if not os.path.isfile(path):
    what = "is a directory" if os.path.isdir(path) else "does not exist"
    raise ConfigError(f"{flag}: {path!r} {what}; give a config file such as configs/copy.py")
  module_spec = importlib.util.spec_from_file_location(f"_rnnlab_{name}_file", path)
  if module_spec is None or module_spec.loader is None:
    raise ConfigError(f"{flag}: {path!r} is not a Python file; give a config file such as "
                      "configs/copy.py")
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f"{flag}: syntax error in {path} at line {e.lineno}: {e.msg}; fix the "
                      "file") from None
  except Exception as e:  # pylint: disable=broad-except  # whatever the file's own code raises
    raise ConfigError(f"{flag}: {path} fails to load ({_one_line(e)}); fix the file") from None
  return module


def call_config_function(name: str, spec: str, function: str = "get_config",
                         missing: str | None = None) -> Any:
  """`function(*variant)` of the config file `spec` given as --name (`get_config`, or a sweep's
  `get_sweep`); ConfigError in one line when the file cannot give it (`missing`: the message when
  it defines no such function)."""
  path, *variant = spec.split(":", 1)
  flag = f"--{name}={spec}"
  fn = getattr(load_config_module(name, spec), function, None)
  if not callable(fn):
    raise ConfigError(missing or f"{flag}: {path} defines no {function}() (a config file "
                      "returns its ConfigDict from get_config(); see configs/copy.py)")
  try:
    inspect.signature(fn).bind(*variant)
  except TypeError:
    if variant:
      raise ConfigError(f"{flag}: {path}'s {function}() takes no variant; drop "
                        f"':{variant[0]}'") from None
    raise ConfigError(f"{flag}: {path}'s {function}() needs a variant: give "
                      f"--{name}={path}:VARIANT") from None
  except ValueError:  # no signature to read (a builtin): let the call tell
    pass
  try:
    return fn(*variant)
  except Exception as e:  # pylint: disable=broad-except  # whatever the file's own code raises
    call = f"{function}({variant[0]!r})" if variant else f"{function}()"
    remedy = "check the variant" if variant else "fix the file"
    raise ConfigError(f"{flag}: {call} of {path} raised {_one_line(e)}; {remedy}") from None


def _checked_config(name: str, spec: str) -> config_dict.ConfigDict:
  """The ConfigDict that config file `spec` gives from get_config; ConfigError if none."""
  config = call_config_function(name, spec, "get_config")
  if not isinstance(config, config_dict.ConfigDict):
    raise ConfigError(f"--{name}={spec}: get_config() returned {type(config).__name__}, not a "
                      "ml_collections.ConfigDict (see configs/copy.py)")
  return config


def _check_overrides(argv: Sequence[str], name: str, config: config_dict.ConfigDict) -> None:
  """Refuses `--config.a.b=...` when `a.b` is not a key of `config` (naming the close ones), and
  `--config.model=...` where config.model is a section: ml_collections would replace the whole
  section with an unlocked dict, so the keys not in it vanish (reported later as missing), a
  typo in it is kept silently, and a later `--config.model.cell=...` fails as an unknown key."""
  for arg in argv[1:]:
    match = re.fullmatch(rf"--?(?:no)?{re.escape(name)}\.([^=]+)(?:=(.*))?", arg, re.DOTALL)
    if match is None:
      continue
    key, text = match.groups()
    node: Any = config
    for i, part in enumerate(key.split(".")):
      if not isinstance(node, config_dict.ConfigDict) or part not in node:
        known = sorted(node.keys()) if isinstance(node, config_dict.ConfigDict) else []
        close = difflib.get_close_matches(part, known, n=3)
        where = ".".join(key.split(".")[:i])
        hint = (f" (did you mean {', '.join(f'{where}.{c}'.lstrip('.') for c in close)}?)"
                if close else "")
        raise ConfigError(f"unknown config key '{key}'{hint}; the config file defines every "
                          "allowed key (see configs/base.py)")
      node = node[part]
    if not isinstance(node, config_dict.ConfigDict):
      continue
    try:
      value = ast.literal_eval(text or "")
    except (SyntaxError, ValueError):
      value = None
    keys = (" ".join(f"--{name}.{key}.{k}={v}" for k, v in _flatten(value))
            if isinstance(value, dict) and value else f"--{name}.{key}.KEY=VALUE")
    raise ConfigError(f"--{name}.{key}=... would replace the whole section {name}.{key}, "
                      f"dropping its other keys; set its keys one at a time instead: {keys}")


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
  """[(dotted key, leaf value)] of a nested dict."""
  out = []
  for key, value in tree.items():
    if isinstance(value, dict):
      out += _flatten(value, f"{prefix}{key}.")
    else:
      out.append((f"{prefix}{key}", value))
  return out


def _one_line(e: BaseException) -> str:
  """`Type: first line of the message`, for an error raised by a user's file."""
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__
