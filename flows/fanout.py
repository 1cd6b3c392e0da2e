"""Scale-out: many releases (data sets x epsilons x seeds) in parallel on Ray.

    python -m flows.fanout --input data.csv --schema schemas/NAME.yaml --epsilon 0.1 1 10 \\
        --seeds 0 1 --out releases/grid [--ray-address ray://head:10001] [--gpus-per-run 1]

Each Ray task gets one RunConfig (paths and settings: public) and runs the whole release
flow of flows/release.py in its worker process; it sends back a small public summary. Private
rows and fitted models stay inside that process and never enter Ray's object store, which can
spill to disk. Exit status: 0 when every run published, 3 when some were quarantined, 2 when
some failed (or the cluster cannot meet --cpus-per-run / --gpus-per-run).
"""
# No `from __future__ import annotations`: Prefect 3.9 needs real pydantic parameter types.

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect_ray import RayTaskRunner
from prefect_ray.context import remote_options

from flows.parameters import parameters
from flows.release import release
from pipelines.cli import EXIT_BAD_INPUT, EXIT_VALIDATION, guarded, quiet_libraries
from pipelines.config import RunConfig, add_run_arguments, config_from_args
from pipelines.errors import DataError
from pipelines.ledger import URL_ENV, Ledger
from pipelines.paths import safe_name
from pipelines.plan import REPORT_FILE
from pipelines.validate import ValidationFailed
from pipelines.validate.images import ImageCheckFailed

# A local Ray instance when no cluster address is given: every core, no dashboard.
LOCAL_RAY = {"num_cpus": os.cpu_count() or 1, "include_dashboard": False}
SUMMARY_KEYS = ("status", "out", "epsilon", "seed", "worker", "failed")


class ClusterTooSmall(Exception):
    """No node of the Ray cluster offers what one run asks for: Ray would wait forever."""


@task(name="release-run", persist_result=False, cache_policy=NO_CACHE)
def release_run(config: RunConfig, threads: int) -> dict:
    """One whole release, in this Ray worker; returns only public facts about it."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)  # this run's share of the node's cores
    torch.set_num_threads(threads)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        result = release(**parameters(config))  # the flow of `python -m flows.release`
    except (ValidationFailed, ImageCheckFailed) as exc:  # quarantined: spent all the same
        where = exc.quarantine or Path(config.out)
        report = where / REPORT_FILE
        spent = json.loads(report.read_text())["epsilon"] if report.is_file() else None
        return {"status": "quarantined", "out": str(where), "epsilon": spent,
                "seed": config.seed, "worker": worker, "failed": failed_lines(exc)}
    return {"status": "published", "out": result["release"],
            "epsilon": result["privacy_report"]["epsilon"], "seed": config.seed,
            "worker": worker, "failed": []}


def failed_lines(exc: ValidationFailed | ImageCheckFailed) -> list[str]:
    """The failed checks of a quarantined release, a line each (a table's gate, or the
    image checks)."""
    if isinstance(exc, ImageCheckFailed):
        return [f"{n}: {d}" for n, ok, d in exc.outcome.checks if not ok]
    return list(exc.outcome.failed)


def check_resources(cpus_per_run: float, gpus_per_run: float) -> None:
    """Raises ClusterTooSmall unless some live node has the CPUs and GPUs of one run."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for name, flag, want in (("CPU", "--cpus-per-run", cpus_per_run),
                             ("GPU", "--gpus-per-run", gpus_per_run)):
        most = max((n.get(name, 0.0) for n in nodes), default=0.0)
        if want > most:
            raise ClusterTooSmall(
                f"{flag} {want:g}: no node of the Ray cluster has {want:g} {name}(s) (the most "
                f"on one node is {most:g}); nothing was run or spent. Lower {flag}, or connect "
                "to a cluster that has such nodes with --ray-address (an autoscaling cluster: "
                "start one such node first)")


@flow(name="synth-release-many", persist_result=False,
      task_runner=RayTaskRunner(init_kwargs=LOCAL_RAY))
def release_many(configs: list[RunConfig], cpus_per_run: float = 1,
                 gpus_per_run: float = 0) -> list[dict]:
    """Many releases in parallel on Ray, one whole release flow per task.

    Args:
        configs: One RunConfig per release, each with its own `out`.
        cpus_per_run: CPUs Ray reserves for each run (its torch threads follow).
        gpus_per_run: GPUs Ray reserves for each run (0: none; fractions share a GPU).
    """
    check_resources(cpus_per_run, gpus_per_run)
    # The workers report to this run's Prefect API (also a temporary server's) and book in
    # its ledger when $SYNTH_LEDGER_URL names it (a file ledger is in each config already)
    ledger_url = os.environ.get(URL_ENV)
    if ledger_url and urlsplit(ledger_url).password is not None:
        raise DataError(f"${URL_ENV} holds a password: Ray would keep it in the runs' "
                        "runtime environment; give it through PGPASSWORD or ~/.pgpass on "
                        "every node instead")
    env = {"PREFECT_API_URL": str(FlowRunContext.get().client.api_url),
           **({URL_ENV: ledger_url} if ledger_url else {})}
    with remote_options(num_cpus=cpus_per_run, num_gpus=gpus_per_run,
                        runtime_env={"env_vars": env}):
        futures = [release_run.submit(c, max(1, int(cpus_per_run))) for c in configs]
    rows = []
    for config, future in zip(configs, futures):
        future.wait()  # a worker that died becomes a Crashed state here, not an exception
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):  # its message is the flow's (redacted) one
            outcome = {"status": "failed", "out": config.out, "epsilon": None,
                       "seed": config.seed, "worker": "-",
                       "failed": [f"{type(outcome).__name__}: {outcome}"]}
        rows.append(outcome)
    get_run_logger().info("%d published, %d quarantined, %d failed", *(
        sum(r["status"] == s for r in rows) for s in ("published", "quarantined", "failed")))
    return rows


def fan_out(configs: list[RunConfig], ray_address: str | None = None,
            cpus_per_run: float = 1, gpus_per_run: float = 0) -> list[dict]:
    """Runs release_many on the Ray cluster at ``ray_address`` ("ray://head:10001", "auto"),
    else on a local Ray instance (or the one this process already started)."""
    if ray_address and not (os.environ.get(URL_ENV) or all(
            c.ledger and "://" in c.ledger for c in configs)):
        print("warning: a SQLite ledger is safe only when every run is on one host (its "
              "locks do not hold over a network file system): on a cluster of several "
              f"nodes give a PostgreSQL ledger (--ledger postgresql://... or ${URL_ENV})",
              file=sys.stderr)
    runner = (RayTaskRunner(address=ray_address, init_kwargs={"address": ray_address})
              if ray_address else RayTaskRunner(init_kwargs=LOCAL_RAY))
    return release_many.with_options(task_runner=runner)(configs, cpus_per_run, gpus_per_run)


def _label(path: str) -> str:
    name = Path(path).name.removesuffix(".gz")
    stem, dot, ext = name.rpartition(".")
    return stem if dot and ext.lower() in {"csv", "tsv", "parquet", "pq", "npz"} else name


def expand_grid(base: RunConfig, datasets: list[tuple[str, str]] | None = None,
                epsilons: list[float] | None = None,
                seeds: list[int] | None = None) -> list[RunConfig]:
    """One RunConfig per (data set, epsilon, seed), each publishing to
    ``<base.out>/<data set>-eps<epsilon>-seed<seed>``; the rest is ``base``'s.

    Args:
        datasets: (input, schema file) pairs (default: base's).

    Raises:
        DataError: two runs would publish to the same directory; UnsafePath (a DataError):
            an input's name cannot name a folder (see pipelines.paths.safe_name).
    """
    datasets = datasets or [(base.path, base.schema_file)]
    labels = [_label(i) for i, _ in datasets]
    labels = [f"{x}-{labels[:k].count(x) + 1}" if labels.count(x) > 1 else x
              for k, x in enumerate(labels)]
    configs = [RunConfig.model_validate({
        **base.model_dump(), "input": i, "schema_file": s, "epsilon": e, "seed": seed,
        "out": str(Path(base.out) / safe_name(f"{label}-eps{e:g}-seed{seed}", "run name"))})
        for (i, s), label in zip(datasets, labels)
        for e in dict.fromkeys(epsilons or [base.epsilon])
        for seed in dict.fromkeys(seeds or [base.seed])]
    outs = [c.out for c in configs]
    clashes = sorted({o for o in outs if outs.count(o) > 1})
    if clashes:
        raise DataError(f"several runs would publish to {', '.join(clashes)}: give distinct "
                        "inputs, epsilons and seeds")
    return configs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.fanout", conflict_handler="resolve",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split(
            "\n\n")[0] + " Runs one release per (input, epsilon, seed) as a Ray task, each "
        "with the options below; a data set's runs add up in its budget ledger.",
        epilog="examples:\n  python -m flows.fanout --input a.csv b.csv --schema a.yaml "
        "b.yaml --epsilon 0.5 1 --out releases/grid\n  python -m flows.fanout --input a.csv "
        "--schema a.yaml --epsilon 1 --seeds 0 1 2 --out releases/grid \\\n      "
        "--ray-address ray://head:10001 --cpus-per-run 4 --gpus-per-run 1 --synthesizer "
        "dp-ctgan\n(on a cluster, every node must see the same paths: inputs, --out, the "
        "ledger)")
    add_run_arguments(parser)  # then the grid's own forms of these options replace them
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help="Private input table(s) (CSV, optionally .gz, or Parquet)")
    parser.add_argument("--schema", dest="schema_file", nargs="+", required=True,
                        metavar="YAML", help="Schema of each input, in the same order (or one "
                        "schema for all)")
    parser.add_argument("--epsilon", type=float, nargs="+", required=True,
                        help="Privacy budget epsilon of each release: one run per value")
    parser.add_argument("--seed", "--seeds", dest="seed", type=int, nargs="+", default=[0],
                        help="Seeds for weight initialisation and sampling: one run per value "
                        "(default: 0)")
    parser.add_argument("--out", required=True, metavar="DIR", help="Parent directory: each "
                        "run publishes to DIR/<input>-eps<epsilon>-seed<seed>")
    ray = parser.add_argument_group("Ray")
    ray.add_argument("--ray-address", metavar="ADDR", help="An existing Ray cluster "
                     "(ray://head:10001, or auto for the one `ray start` runs here; default: "
                     "a local Ray instance on this machine's cores)")
    ray.add_argument("--cpus-per-run", type=float, default=1.0, metavar="N",
                     help="CPUs reserved for each run (default: 1)")
    ray.add_argument("--gpus-per-run", type=float, default=0.0, metavar="G",
                     help="GPUs reserved for each run, e.g. 1 or 0.5 (default: 0)")
    return parser


def table(rows: list[dict]) -> str:
    lines = [f"{'status':11}  {'epsilon':>7}  {'seed':>4}  {'worker':22}  release / failed checks"]
    for r in rows:
        eps = "-" if r["epsilon"] is None else f"{r['epsilon']:.4g}"
        lines.append(f"{r['status']:11}  {eps:>7}  {r['seed']:>4}  {r['worker'][:22]:22}  "
                     f"{r['out']}")
        lines += [f"{'':53}- {line}" for line in r["failed"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()

    def run() -> int:
        inputs, schemas = args.input, args.schema_file
        if len(schemas) not in (1, len(inputs)):
            raise DataError(f"{len(inputs)} --input files and {len(schemas)} --schema files: "
                            "give one schema per input, or one for all")
        schemas = schemas * len(inputs) if len(schemas) == 1 else schemas
        # Absolute paths and one ledger, so that every Ray worker reads and books the same
        absolute = [(os.path.abspath(i), os.path.abspath(s)) for i, s in zip(inputs, schemas)]
        ledger = Ledger(args.ledger)  # a PostgreSQL URL stays as given (or in the environment)
        sqlite = ledger.path  # None exactly when the ledger is a PostgreSQL URL
        base = config_from_args(argparse.Namespace(**{
            **vars(args), "input": absolute[0][0], "schema_file": absolute[0][1],
            "epsilon": args.epsilon[0], "seed": args.seed[0], "out": os.path.abspath(args.out),
            "ledger": args.ledger if sqlite is None else str(sqlite.absolute())}))
        configs = expand_grid(base, absolute, args.epsilon, args.seed)
        try:
            rows = fan_out(configs, args.ray_address, args.cpus_per_run, args.gpus_per_run)
        except ClusterTooSmall as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(table(rows))
        states = {r["status"] for r in rows}
        return (EXIT_BAD_INPUT if "failed" in states else
                EXIT_VALIDATION if "quarantined" in states else 0)

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
