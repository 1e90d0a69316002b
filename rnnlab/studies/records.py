"""A study's run records, kept beside its report: the report's data, small enough to commit.

A study's workdir (one run folder per point, and sweep.json) lives on the machine that trained
it. Its records folder holds sweep.json and, for every point that has started, the point's record
(`run_folder.copy_record`: config.json, metrics.jsonl, summary.json, diverged.json) and, for a
point not yet finished, its latest checkpoints. So the folder is itself a study workdir:
- the report is rebuilt from it (`--from_workdirs --workdir=RECORDS`), by anyone, anywhere;
- the study goes on from it on another machine: copy it to a workdir and run the study's command
  there; finished points are skipped and unfinished ones resume from their checkpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from typing import Iterator, Sequence

from rnnlab.errors import RnnlabError
from rnnlab.studies import sweep
from rnnlab.training import run_files, run_folder


def write(workdir: str, points: Sequence[sweep.Point], dest: str) -> None:
  """Replaces the records folder `dest` with the records of the study in `workdir`.

  The new folder is built beside `dest` and swapped in, under a lock that writers of records in
  the same folder (shards sharing a --results_dir) take in turn: a kill leaves the old folder or
  the new one, and the next write clears what it left (a half-built folder, or the old folder
  moved aside, put back).
  """
  here, there = os.path.realpath(workdir), os.path.realpath(dest)
  if there == here:
    return  # the study's own workdir is its records
  if os.path.commonpath([here, there]) == there:
    raise RnnlabError(f"the run records would go to {dest}, which holds the study's workdir "
                      f"{workdir}: pass another --results_dir")
  parent, base = os.path.dirname(there), os.path.basename(there)
  os.makedirs(parent, exist_ok=True)
  aside = os.path.join(parent, f"{base}.old")
  try:
    with _writers_lock(parent):
      if os.path.isdir(aside) and not os.path.exists(there):
        os.replace(aside, there)  # a write killed between its two renames
      for leftover in os.listdir(parent):
        if leftover.startswith(f"{base}.tmp.") or leftover == f"{base}.old":
          shutil.rmtree(os.path.join(parent, leftover), ignore_errors=True)
      tmp = tempfile.mkdtemp(prefix=f"{base}.tmp.", dir=parent)
      try:
        _fill(tmp, workdir, points)
        if os.path.exists(there):
          os.replace(there, aside)
        os.replace(tmp, there)
        shutil.rmtree(aside, ignore_errors=True)
      finally:
        shutil.rmtree(tmp, ignore_errors=True)
  except OSError as e:
    raise run_files.write_error(dest, e) from None


@contextlib.contextmanager
def _writers_lock(folder: str) -> Iterator[None]:
  """flock on `folder` itself: writers of records there take turns, and no lock file is left in
  a results folder (the OS releases it when its holder dies)."""
  fd = os.open(folder, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # releases the lock


def _fill(folder: str, workdir: str, points: Sequence[sweep.Point]) -> None:
  with open(os.path.join(workdir, sweep.MANIFEST_FILE), "rb") as f:
    run_folder.atomic_write(os.path.join(folder, sweep.MANIFEST_FILE), f.read())
  for point in points:
    status = sweep.status(point)
    if status != "new":
      run_folder.copy_record(point.workdir, os.path.join(folder, point.name),
                             extra_files=(sweep.DIVERGED_FILE,), checkpoints=status == "partial")
