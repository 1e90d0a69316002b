"""What every absl entry point shares: quiet third-party logs and user errors without tracebacks."""

from __future__ import annotations

import logging as py_logging
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence

from absl import app, flags, logging

from rnnlab.errors import RnnlabError


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
  return type(error)(message)


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)`, printing RnnlabError as one line on stderr with exit code 1."""
  use_safe_cpu_scheduler()

  def wrapped(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(_DropLibraryChatter())
    sys.unraisablehook = _quiet_late_callbacks
    try:
      main(argv)
    except RnnlabError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

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
  """absl's flag parsing, with a config override of an unknown key reported in one line."""
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
