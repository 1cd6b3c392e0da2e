"""Runs ``synth run`` with one kill point armed: ``python -m tests.fault_child POINT ARGS...``.

The product has no fault hooks: this wraps one named function of it so that the process sends
itself SIGKILL at that point (before or after the real call, as the point needs), then calls
``pipelines.cli.main(ARGS)`` exactly as ``synth run`` would. Used by tests/test_faults.py, which
runs every point in one ``--zygote JOBS RESULTS`` process: it pays the imports once and forks
a child per point.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, out: Path) -> None:
    import pyarrow.parquet as pq

    from pipelines import publish, run, train
    from pipelines.ledger import Ledger
    from pipelines.publish import atomic  # where files are written and swapped in

    def after(module, name: str):  # the real call completes, then the process dies
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            real(*args, **kwargs)
            die()
        setattr(module, name, wrapper)

    if point == "ingest":  # the private rows are read; no DP step yet
        after(run, "load")
    elif point == "ledger-start":  # the entry is 'spending', no step has run
        after(Ledger, "start")
    elif point == "training":  # after a few DP steps (the progress callback)
        real_train = train.train

        def train_then_die(*args, progress=None, **kwargs):
            def tick(done: int, total: int) -> None:
                if done >= 2:
                    die()
            return real_train(*args, progress=tick, **kwargs)
        run.train = train_then_die
    elif point == "checkpoint":  # the first training checkpoint saved (--checkpoint-every)
        from pipelines.checkpoints import RunCheckpoint

        after(RunCheckpoint, "save")
    elif point == "checkpoint-write":  # half of the first checkpoint written, not renamed
        real_checkpoint_file = atomic.write_file

        def write_checkpoint(path, blob):
            if not Path(path).name.startswith(".checkpoint.pt.staging-"):
                return real_checkpoint_file(path, blob)
            with open(path, "wb") as f:
                f.write(blob[: len(blob) // 2])
            die()
        atomic.write_file = write_checkpoint
    elif point == "before-commit":  # training finished, the accountant's spend not recorded
        def commit(self, *args, **kwargs):
            die()
        Ledger.commit = commit
    elif point == "sampling":  # inside generate: rows sampled, not yet post-processed
        after(run, "sample")
    elif point == "parquet":  # half of data.parquet written in the release's staging dir
        def half_write(table, where, **kwargs):
            buffer = io.BytesIO()
            real_write(table, buffer, **kwargs)
            where.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            where.flush()
            os.fsync(where.fileno())
            die()
        real_write = pq.write_table
        pq.write_table = half_write
    elif point in ("extra-file", "manifest"):  # half of validation.json (or of the
        # manifest, the last file staged) written, data.parquet complete
        real_file = atomic.write_file
        half = "validation.json" if point == "extra-file" else publish.MANIFEST_FILE

        def write_file(path, blob):
            if (Path(path).name != half  # the release's staging, not the internal folder's
                    or not Path(path).parent.name.startswith(f".{out.name}.staging-")):
                return real_file(path, blob)
            with open(path, "wb") as f:
                f.write(blob[: len(blob) // 2])
            die()
        atomic.write_file = write_file
    elif point in ("swap-in", "mid-swap"):  # the release's staging dir complete, not renamed
        real_rename = os.rename

        def rename(src, dst, *args, **kwargs):
            if Path(dst) == out.absolute() and ".staging-" in Path(src).name:
                die()  # the old release is already renamed aside
            return real_rename(src, dst, *args, **kwargs)
        if point == "mid-swap":  # with --overwrite: the old release is being replaced
            real_exchange = atomic._exchange

            def exchange(staging, out_dir):  # swapped atomically, the old not yet deleted
                swapped = real_exchange(staging, out_dir)
                if swapped and Path(out_dir) == out.absolute():
                    die()
                return swapped
            atomic._exchange = exchange
            atomic.os.rename = rename  # where it cannot swap: between the two renames
        else:
            real_swap = atomic._swap_in

            def swap_in(staging, out_dir, overwrite):
                if Path(out_dir) == out.absolute():
                    die()
                return real_swap(staging, out_dir, overwrite)
            atomic._swap_in = swap_in
    elif point == "between-internal-and-release":
        after(run, "publish_folder")
    elif point == "after-release-rename":  # the release is in place (the run key was written
        # with the internal folder, before it; it used to be written after)
        after(run, "publish")
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def run_point(point: str, args: list[str]) -> int:
    arm(point, Path(args[args.index("--out") + 1]))
    from pipelines.cli import main as synth

    return synth(args)


def zygote(jobs_file: str, results_file: str) -> None:
    """Imports the product and its heavy libraries once, then forks one child per job (a
    JSON list of ``{"point", "args", "log"}``), one at a time, each armed at its point;
    writes each child's exit status (negative: killed by that signal) as a JSON list. The
    children are real processes that die by SIGKILL: nothing of them survives but the disk."""
    import great_expectations  # noqa: F401  the checks' import, seconds: paid once
    import opacus  # noqa: F401
    import torch  # noqa: F401  no torch op runs here: each child's are its own

    import pipelines.run  # noqa: F401  with pipelines.cli and the rest of the product

    statuses = []
    for job in json.loads(Path(jobs_file).read_text()):
        pid = os.fork()
        if pid == 0:  # the child: its output to the job's log, then the run
            try:
                fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                code = run_point(job["point"], job["args"])
            except BaseException:  # noqa: BLE001  reported in the log, never raised on
                import traceback

                traceback.print_exc()
                code = 99
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        statuses.append(os.waitstatus_to_exitcode(status))
    Path(results_file).write_text(json.dumps(statuses))


def main(argv: list[str]) -> int:
    if argv[0] == "--zygote":
        zygote(argv[1], argv[2])
        return 0
    return run_point(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
