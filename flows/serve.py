"""The release flow as a service: a Prefect server plus one deployment per config file.

    python -m flows.serve              # = make serve: server on 127.0.0.1:4200 + deployments
    python -m flows.serve --api-url URL   # deployments only, against a running server

Every ``flows/deployments/*.yaml`` becomes a deployment of ``flows.release.release`` with its
schedule, tags and description; its ``config`` is the deployment's default ``RunConfig``, which
the UI renders as a validated form (descriptions, ranges, choices). The deployments are
*served* (``prefect.serve``): this process registers them and runs each flow run as its own
subprocess, in the repository root, one at a time. That needs no work pool, no worker and no
code storage, since the code is this checkout; a process work pool plus ``prefect worker``
is the step up when runs must execute on other hosts: ``--prefect-yaml`` prints the
deployments as a ``prefect.yaml`` for ``prefect deploy`` (flows/prefect_yaml.py).

Each run's artifacts link its release-safe report, served over HTTP from the output root by
this process (``flows.reports``, on ``--port`` + 1 unless ``--reports-port`` says otherwise).

Runs take their parameters from a form, so every release must land inside the output root
(``--output-root``, default ``releases/``; see ``pipelines.paths``), whatever ``out`` says.

A server reachable beyond loopback must require Prefect's basic auth string
(``PREFECT_SERVER_API_AUTH_STRING``, clients send ``PREFECT_API_AUTH_STRING``): ``--host``
other than loopback is refused without it.
"""
# No `from __future__ import annotations` here (see flows/release.py).

import argparse
import ipaddress
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, cast

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from pipelines.config import RunConfig
from pipelines.paths import ROOT_ENV, UnsafePath, output_root, release_dir
from schemas import SchemaError
from schemas.safe_yaml import read_yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = Path(__file__).resolve().parent / "deployments"
PATH_FIELDS = ("input", "schema_file", "out", "ledger")


class DeploymentFileError(ValueError):
    """A deployment file that cannot be read or does not validate; the message names it."""


ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)  # interval schedules count from here by default


class Schedule(BaseModel):
    """When the deployment runs: a cron expression, or an interval in seconds counted from
    a fixed ``anchor`` (so a restarted service keeps the same run times)."""

    model_config = {"extra": "forbid"}

    cron: str | None = Field(None, min_length=1, description="Cron expression, e.g. "
                             "'0 3 * * 1'")
    interval: float | None = Field(None, gt=0, description="Seconds between runs")
    anchor: datetime = Field(ANCHOR, description="When interval runs are counted from "
                             "(ISO 8601; default 2026-01-01T00:00:00Z)")
    timezone: str = Field("UTC", description="Time zone of the cron expression")

    @model_validator(mode="after")
    def _one_kind(self) -> "Schedule":
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of 'cron' and 'interval'")
        return self


class DeploymentSpec(BaseModel):
    """One file of flows/deployments/: a named, scheduled release configuration."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Deployment name")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    schedule: Schedule | None = None
    config: RunConfig
    kind: Literal["release"] = "release"  # the one flow there is today
    _path: Path | None = PrivateAttr(None)  # the file it was read from

    @property
    def path(self) -> str:
        return str(self._path) if self._path else f"deployment {self.name}"


def resolve_paths(config: dict, root: Path = ROOT) -> dict:
    """The config with relative paths made absolute against ``root`` (the repository root),
    so a served run finds them whatever its working directory."""
    out = dict(config)
    for key in PATH_FIELDS:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = str((root / value).resolve())
        elif key == "input" and isinstance(value, dict):  # a multi-table run's files
            out[key] = {t: str((root / v).resolve()) if isinstance(v, str) and v
                        and not Path(v).is_absolute() else v for t, v in value.items()}
    return out


def load_spec(path: Path, root: Path = ROOT) -> DeploymentSpec:
    """Read and validate one deployment file.

    Raises:
        DeploymentFileError: unreadable YAML or a value RunConfig refuses, naming the file.
    """
    try:  # as safely as a schema: no aliases, duplicate keys, bombs or special files
        raw = read_yaml(Path(path), "deployment file")
    except SchemaError as exc:
        raise DeploymentFileError(str(exc)) from None
    if not isinstance(raw, dict):
        raise DeploymentFileError(f"{path}: expected a mapping with name, schedule, tags, "
                                  "config")
    if isinstance(raw.get("config"), dict):
        raw = {**raw, "config": resolve_paths(raw["config"], root)}
    try:
        spec = DeploymentSpec.model_validate(raw)
        spec._path = Path(path)
        return spec
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise DeploymentFileError(f"{path}: {problems} (fix the file; RunConfig in "
                                  "pipelines/config.py lists the fields)") from None


def load_specs(folder: Path = DEPLOYMENTS, root: Path = ROOT) -> list[DeploymentSpec]:
    """Every ``*.yaml`` of ``folder``, validated; all problems reported at once."""
    specs, errors = [], []
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            specs.append(load_spec(path, root))
        except DeploymentFileError as exc:
            errors.append(str(exc))
    names = [s.name for s in specs]
    errors += [f"deployment name {n!r} is used by more than one file in {folder}"
               for n in sorted({n for n in names if names.count(n) > 1})]
    if errors:
        raise DeploymentFileError("\n".join(errors))
    if not specs:
        raise DeploymentFileError(f"{folder}: no deployment files (*.yaml)")
    return specs


def to_deployments(specs: list[DeploymentSpec]) -> list:
    """A RunnerDeployment of the release flow per spec (imports the flow: torch and all)."""
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.deployments.runner import EntrypointType

    from flows.parameters import parameters
    from flows.release import release

    deployments = []
    for spec in specs:
        schedule = {}
        if spec.schedule and spec.schedule.cron:
            schedule["schedule"] = CronSchedule(cron=spec.schedule.cron,
                                                timezone=spec.schedule.timezone)
        elif spec.schedule:  # anchored: a restart does not shift the run times
            schedule["schedule"] = IntervalSchedule(
                # _one_kind: no cron (never empty), so an interval
                interval=timedelta(seconds=cast(float, spec.schedule.interval)),
                anchor_date=spec.schedule.anchor, timezone=spec.schedule.timezone)
        # flows.release rebinds release to its Prefect flow after giving it a signature
        deployments.append(release.to_deployment(  # type: ignore[attr-defined]
            name=spec.name, description=spec.description or None, tags=spec.tags,
            parameters=parameters(spec.config),
            # the served subprocess imports flows.release by module (installed package),
            # not by file path
            entrypoint_type=EntrypointType.MODULE_PATH, **schedule))
    return deployments


def health_url(api_url: str) -> str:
    return api_url.rstrip("/") + "/health"


def wait_healthy(api_url: str, timeout: float, process: subprocess.Popen | None = None) -> float:
    """Seconds until ``GET {api_url}/health`` answered 200 (open even with an auth string).

    Raises:
        RuntimeError: the server process exited, or no answer within ``timeout``.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(health_url(api_url), timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no answer from {health_url(api_url)} within {timeout:.0f} s")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_server(host: str, port: int, env: dict | None = None) -> subprocess.Popen:
    """``prefect server start`` as a child in its own process group (``stop_server`` ends
    the whole group). SQLite under ``$PREFECT_HOME`` unless
    ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` says otherwise; analytics off.

    Raises:
        RuntimeError: a host beyond loopback without ``PREFECT_SERVER_API_AUTH_STRING``.
    """
    env = dict(os.environ if env is None else env)
    if not is_loopback(host) and not env.get("PREFECT_SERVER_API_AUTH_STRING"):
        raise RuntimeError(f"refusing to expose the Prefect server on {host} without "
                           "authentication: set PREFECT_SERVER_API_AUTH_STRING='user:password' "
                           "(see README, 'Running it as a service')")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # where the UI's JavaScript calls the API: else it assumes port 4200 whatever --port says
    wildcard = host in ("0.0.0.0", "::", "")
    shown = "127.0.0.1" if wildcard else f"[{host}]" if ":" in host else host
    env.setdefault("PREFECT_UI_API_URL", f"http://{shown}:{port}/api")
    env.setdefault("DO_NOT_TRACK", "1")
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect) if prefect.exists() else "prefect", "server", "start",
               "--host", host, "--port", str(port), "--analytics-off"]
    return subprocess.Popen(command, env=env, start_new_session=True)


def stop_server(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def serve_deployments(specs: list[DeploymentSpec], limit: int = 1) -> None:
    """Register the deployments and run their flow runs until interrupted (blocks)."""
    from prefect import serve

    os.chdir(ROOT)  # flow runs are subprocesses in this directory
    # pause_on_shutdown=False: the schedules stay active in the database; `make serve`
    # stops server and runner together, and a restart picks them up again.
    serve(*to_deployments(specs), limit=limit, pause_on_shutdown=False)


def serve_reports(root: Path, host: str, port: int):
    """The report server (``flows.reports``) for the runs this process serves, which find
    its address in ``SYNTH_REPORTS_URL`` (None, and no links, when ``port`` is 0)."""
    if not port:
        return None
    from flows.artifacts import REPORTS_ENV
    from flows.reports import start

    auth = os.environ.get("PREFECT_SERVER_API_AUTH_STRING")
    if not is_loopback(host) and not auth:
        raise RuntimeError(f"refusing to serve release reports on {host} without "
                           "authentication: set PREFECT_SERVER_API_AUTH_STRING")
    try:
        server = start(root, host, port, auth)
    except OSError as exc:
        raise RuntimeError(f"cannot serve release reports on {host}:{port}: "
                           f"{exc.strerror or exc} (choose --reports-port)") from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host \
        else host
    os.environ[REPORTS_ENV] = f"http://{shown}:{port}"
    print(f"release reports: {os.environ[REPORTS_ENV]}/<release>/report.html", file=sys.stderr)
    return server


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address the server binds (default 127.0.0.1; anything else "
                             "needs PREFECT_SERVER_API_AUTH_STRING)")
    parser.add_argument("--port", type=int, default=4200, help="Server port (default 4200)")
    parser.add_argument("--api-url", default=None,
                        help="Serve the deployments against this running server instead of "
                             "starting one (e.g. http://host:4200/api)")
    parser.add_argument("--deployments", type=Path, default=DEPLOYMENTS,
                        help=f"Folder of deployment files (default {DEPLOYMENTS})")
    parser.add_argument("--limit", type=int, default=1,
                        help="Flow runs executed at the same time (default 1)")
    parser.add_argument("--startup-timeout", type=float, default=180,
                        help="Seconds to wait for the server to answer (default 180)")
    parser.add_argument("--prefect-yaml", action="store_true",
                        help="Print the deployments as a prefect.yaml for `prefect deploy` "
                             "with a process work pool, and exit (see flows/prefect_yaml.py)")
    parser.add_argument("--reports-port", type=int, default=None,
                        help="Port of the release-report server the UI's artifacts link to "
                             "(default: --port + 1; 0: none)")
    parser.add_argument("--output-root", type=Path, default=None,
                        help=f"Folder every run's release must go into, whatever a form "
                             f"asks (default: ${ROOT_ENV}, else {ROOT / 'releases'})")
    args = parser.parse_args(argv)
    # runs take `out` from a form: confine them (and the served runs, which inherit this)
    root = args.output_root or output_root() or ROOT / "releases"
    os.environ[ROOT_ENV] = str(root.resolve())
    try:
        specs = load_specs(args.deployments)
        for spec in specs:
            try:
                release_dir(spec.config.out)
            except UnsafePath as exc:
                raise DeploymentFileError(f"{spec.path}: config.out: {exc}") from None
    except DeploymentFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.prefect_yaml:
        from flows.prefect_yaml import prefect_yaml

        sys.stdout.write(prefect_yaml(specs, ROOT, root))
        return 0

    os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))  # SQLite: .prefect/prefect.db
    # Ctrl-C and SIGTERM stop the runner, then the server (`finally`). SIGINT is restored
    # because a shell starts background commands (`make serve &`) with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    server = reports = None
    try:
        port = args.port + 1 if args.reports_port is None else args.reports_port
        reports = serve_reports(root.resolve(), args.host, port)
        if args.api_url is None:
            server = start_server(args.host, args.port)
            shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
            api_url = f"http://{shown}:{args.port}/api"
            print(f"starting the Prefect server (PREFECT_HOME={os.environ['PREFECT_HOME']})",
                  file=sys.stderr)
            wait_healthy(api_url, args.startup_timeout, server)
            print(f"UI: http://{shown}:{args.port}  API: {api_url}", file=sys.stderr)
        else:
            api_url = args.api_url
        os.environ["PREFECT_API_URL"] = api_url  # this process and its flow-run children
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            serve_deployments(specs, limit=args.limit)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if reports is not None:
            reports.shutdown()
        if server is not None:
            stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
