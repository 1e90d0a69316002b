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

import os
import shutil
from typing import Sequence

from rnnlab.studies import sweep
from rnnlab.training import run_files, run_folder


def write(workdir: str, points: Sequence[sweep.Point], dest: str) -> None:
  """Replaces the records folder `dest` with the records of the study in `workdir`.

  The new folder is made beside `dest` and swapped in, so a kill leaves the old folder or the new
  one (and a temporary folder that the next write removes), never a mix.
  """
  if os.path.abspath(dest) == os.path.abspath(workdir):
    return  # the study's own workdir is its records
  parent = os.path.dirname(os.path.abspath(dest))
  base = os.path.basename(os.path.abspath(dest))
  for leftover in os.listdir(parent) if os.path.isdir(parent) else ():
    if leftover.startswith(f"{base}.tmp."):
      shutil.rmtree(os.path.join(parent, leftover), ignore_errors=True)
  tmp = f"{os.path.abspath(dest)}.tmp.{os.getpid()}"
  os.makedirs(tmp)
  try:
    with open(os.path.join(workdir, sweep.MANIFEST_FILE), "rb") as f:
      run_folder.atomic_write(os.path.join(tmp, sweep.MANIFEST_FILE), f.read())
    for point in points:
      status = sweep.status(point)
      if status != "new":
        run_folder.copy_record(point.workdir, os.path.join(tmp, point.name),
                               extra_files=(sweep.DIVERGED_FILE,),
                               checkpoints=status == "partial")
    old = f"{tmp}.old"
    if os.path.exists(dest):
      os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
  except OSError as e:
    raise run_files.write_error(dest, e) from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
