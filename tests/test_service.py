"""The platform as a service: a real Prefect server on loopback (started once for this module,
with an API auth string), the deployments of flows/deployments/ served by ``python -m
flows.serve``, a run triggered through the API, and authentication enforced."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from flows.serve import (
    DeploymentFileError,
    load_spec,
    load_specs,
    start_server,
    stop_server,
    wait_healthy,
)
from tests.conftest import ROOT, server_env

USER, PASSWORD = "dp-synth", "test-secret-4c1e"
AUTH = f"{USER}:{PASSWORD}"
FLOW = "synth-release"


@dataclass
class Service:
    api: str
    home: Path
    log: Path
    root: Path  # the output root every served run's release must go into
    reports: str  # the release-report server's address


SMALL = "adult-small"  # a deployment of this module's own: Adult's first 2,000 records


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """End a child started in its own session, and whatever it spawned."""
    stop_server(process, grace=10)


def small_deployment(folder: Path, sample: Path, out: Path) -> None:
    """The shipped deployment files, plus one that releases a small sample quickly."""
    folder.mkdir()
    for path in (ROOT / "flows" / "deployments").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    (folder / f"{SMALL}.yaml").write_text(json.dumps({
        "name": SMALL, "tags": ["test"], "schedule": {"interval": 3600},
        "config": {"input": str(sample), "schema_file": "schemas/adult.yaml", "out": str(out),
                   "epsilon": 2.0, "rows": 800, "noise_seed": 5, "overwrite": True,
                   "components": 64,  # a small mixture: quick; the tests do not depend on it
                   # 1,800 training rows and 800 synthetic ones: the default bounds are
                   # too tight
                   "fidelity": {"ks_max": 0.3, "tv_max": 0.3, "association_max": 0.2,
                                "pmse_max": 0.25, "tstr_min": 0.5}}}))


@pytest.fixture(scope="module")
def service(tmp_path_factory, adult_sample):
    home = tmp_path_factory.mktemp("prefect-service")
    port, reports = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    # no scheduled runs appear by themselves during the test; the schedules are still
    # stored and read back
    env = server_env(home, PREFECT_SERVER_API_AUTH_STRING=AUTH,
                     PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
                     PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false")
    old_home = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)  # this process too, should it import prefect now
    server = start_server("127.0.0.1", port, env)
    runner = None
    log = home / "serve.log"
    try:
        wait_healthy(api, 180, server)
        # the runner looks for triggered runs every second, not every 10 (Prefect's default:
        # each run the tests trigger waited up to 10 s for it)
        client_env = {**env, "PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": AUTH,
                      "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        client_env.pop("PREFECT_SERVER_API_AUTH_STRING")
        root = ROOT / "releases"  # the default; the deployments' own releases go there
        deployments = home / "deployments"
        small_deployment(deployments, adult_sample, root / f"test-service-{os.getpid()}")
        with open(log, "wb") as sink:
            runner = subprocess.Popen([sys.executable, "-m", "flows.serve", "--api-url", api,
                                       "--output-root", str(root), "--deployments",
                                       str(deployments), "--reports-port", str(reports)],
                                      cwd=ROOT, env=client_env, stdout=sink,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        from prefect.settings import (
            PREFECT_API_AUTH_STRING,
            PREFECT_API_URL,
            PREFECT_HOME,
            temporary_settings,
        )

        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: AUTH,
                                         PREFECT_HOME: str(home)}):
            yield Service(api=api, home=home, log=log, root=root,
                          reports=f"http://127.0.0.1:{reports}")
    finally:
        if runner is not None:
            # SIGINT is what Ctrl-C sends `make serve`; SIGTERM/SIGKILL after that
            try:
                os.killpg(runner.pid, signal.SIGINT)
                runner.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            stop(runner)
        stop(server)
        if old_home is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = old_home


def served_deployments(service: Service, timeout: float = 150) -> dict:
    """The deployments once ``flows.serve`` has registered all of them."""
    from prefect.client.orchestration import get_client

    wanted = {s.name for s in load_specs()} | {SMALL}
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with get_client(sync_client=True) as client:
            found = {d.name: d for d in client.read_deployments()}
        if wanted <= set(found):
            return found
        time.sleep(1)
    raise AssertionError(f"deployments not registered within {timeout} s; serve log:\n"
                         + service.log.read_text()[-3000:])


def test_every_deployment_file_validates_into_a_run_config():
    specs = load_specs()
    assert {s.name for s in specs} >= {"adult-demo", "medical-demo", "fashion-mnist-demo"}
    for spec in specs:
        # relative paths were resolved against the repository root, and exist
        inputs = spec.config.input
        for path in inputs.values() if isinstance(inputs, dict) else [inputs]:  # by table
            assert Path(path).is_absolute() and Path(path).exists()
        assert Path(spec.config.schema_file).exists()
        assert Path(spec.config.out).is_relative_to(ROOT / "releases")
        assert spec.schedule is not None and spec.tags


def test_a_bad_deployment_file_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nschedule: {cron: '0 3 * * *'}\n"
                   "config: {input: x.csv, schema_file: s.yaml, out: o, epsilon: -1,"
                   " synthesizer: nope}\n")
    with pytest.raises(DeploymentFileError) as err:
        load_spec(bad)
    message = str(err.value)
    assert str(bad) in message and "config.epsilon" in message
    assert "config.synthesizer" in message
    (tmp_path / "twice.yaml").write_text("name: x\nschedule: {cron: '0 3 * * *', interval: 5}\n"
                                         "config: {input: a, schema_file: b, out: c, "
                                         "epsilon: 1}\n")
    with pytest.raises(DeploymentFileError, match="twice.yaml.*exactly one"):
        load_specs(tmp_path)
    (tmp_path / "twice.yaml").unlink()
    (tmp_path / "empty.yaml").write_text("name: e\nschedule: {cron: ''}\n"
                                         "config: {input: a, schema_file: b, out: c, "
                                         "epsilon: 1}\n")
    with pytest.raises(DeploymentFileError, match="empty.yaml: schedule.cron"):
        load_specs(tmp_path)


def test_exposing_the_server_without_an_auth_string_is_refused():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_API_AUTH_STRING"}
    with pytest.raises(RuntimeError, match="PREFECT_SERVER_API_AUTH_STRING"):
        start_server("0.0.0.0", free_port(), env)


def test_every_config_file_is_a_served_deployment_with_schedule_tags_and_form(service):
    found = served_deployments(service)
    for spec in load_specs():
        deployment = found[spec.name]
        assert set(deployment.tags) == set(spec.tags)
        assert deployment.description == spec.description
        assert deployment.entrypoint == "flows.release.release"
        assert deployment.work_pool_name is None  # served, not pooled
        [schedule] = deployment.schedules
        assert schedule.active
        if spec.schedule.cron:
            assert schedule.schedule.cron == spec.schedule.cron
        else:
            assert schedule.schedule.interval.total_seconds() == spec.schedule.interval
            # anchored: a restarted service keeps the run times
            assert schedule.schedule.anchor_date == spec.schedule.anchor
        assert deployment.parameters["input"] == spec.config.input
        # the run form: RunConfig's fields with descriptions, ranges and choices
        form = deployment.parameter_openapi_schema["properties"]
        assert form["epsilon"]["minimum"] == 1e-6 and form["epsilon"]["description"]
        assert "dp-marginals" in form["synthesizer"]["enum"]
        assert deployment.enforce_parameter_schema


@pytest.fixture(scope="module")
def served_run(service):
    """One run of the small deployment triggered through the API with one parameter
    changed (epsilon: the deployment's values stand for the rest); its flow run, logs and
    artifacts as the API returns them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.deployments import run_deployment

    served_deployments(service)
    out = service.root / f"test-service-{os.getpid()}"
    run = run_deployment(f"{FLOW}/{SMALL}", parameters={"epsilon": 1.0}, timeout=300,
                         poll_interval=1)
    try:
        assert run.state is not None and run.state.is_completed(), (
            f"{run.state}; serve log:\n{service.log.read_text()[-3000:]}")
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
            # the runner ships logs in batches, after the run's state: wait for them
            deadline, logs = time.monotonic() + 60, []
            while not any(f"published {out}" in e.message for e in logs) \
                    and time.monotonic() < deadline:
                time.sleep(0 if not logs else 1)
                logs = client.read_logs(log_filter=LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        yield run, out, [e.message for e in logs], {a.key: a for a in artifacts}
    finally:
        for suffix in ("", ".internal", ".quarantine"):
            shutil.rmtree(out.with_name(out.name + suffix), ignore_errors=True)


def link_of(artifact) -> str:
    """The address of a link artifact (the API stores it as markdown: [text](address))."""
    return artifact.data.rsplit("](", 1)[-1].removesuffix(")")


def test_a_run_given_only_epsilon_publishes_with_the_deployments_other_settings(
        served_run):
    run, out, _, _ = served_run
    assert run.parameters["epsilon"] == 1.0 and run.parameters["rows"] == 800
    frame = pd.read_parquet(out / "data.parquet")
    report = json.loads((out / "privacy_report.json").read_text())
    assert len(frame) == 800 and report["epsilon"] <= 1.0 + 1e-9


def test_a_served_runs_logs_and_artifacts_say_what_happened(served_run):
    """Through Prefect's API: a log line per phase (the public progress channel) and a
    release artifact stating the claim, where it is and the data set's budget."""
    run, out, logs, artifacts = served_run
    text = "\n".join(logs)
    for phase in ("prepare:", "ingest:", "train:", "sample:", "check: schema suite",
                  "check: release against the DP-measured marginals", "check: canary audit",
                  "publish: published"):
        assert phase in text, (phase, text[-3000:])
    assert "% of the privacy budget measured" in text  # training's steady progress lines
    assert f"published {out}" in text
    assert {"release", "release-checks", "release-report"} <= set(artifacts)
    summary = artifacts["release"].data
    report = json.loads((out / "privacy_report.json").read_text())
    for fact in ("Published", f"{report['epsilon']:.4f}", f"{report['delta']:.3g}",
                 report["accountant"], "dp-marginals", "800", str(out),
                 "data set 'adult' has spent epsilon"):
        assert fact in summary, (fact, summary)
    link = link_of(artifacts["release-report"])
    assert link.startswith("http://") and link.endswith("/report.html")
    served = httpx.get(link, timeout=10)
    assert served.status_code == 200 and served.text == (out / "report.html").read_text()
    # the report server answers for public report files of releases only
    base = link.removesuffix("/report.html")
    for private in ("/data.parquet", ".internal/report.html", "/../../etc/passwd"):
        assert httpx.get(base + private, timeout=10).status_code == 404, private


def test_a_form_cannot_send_a_release_outside_the_output_root(service, adult_sample,
                                                               tmp_path):
    """``out`` comes from a form: one outside the served output root fails the run before
    the ledger or the disk is touched."""
    from prefect.deployments import run_deployment

    served_deployments(service)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    config = {"input": str(adult_sample), "schema_file": str(ROOT / "schemas" / "adult.yaml"),
              "out": str(victim), "overwrite": True, "epsilon": 1.0,
              "ledger": str(tmp_path / "ledger.db")}
    run = run_deployment(f"{FLOW}/adult-demo", parameters=config, timeout=300,
                         poll_interval=1)
    assert run.state is not None and run.state.is_failed()
    assert "outside the output root" in run.state.message
    assert os.listdir(victim) == ["keep.txt"] and not (tmp_path / "ledger.db").exists()


def test_the_api_refuses_unauthenticated_calls(service):
    health = httpx.get(f"{service.api}/health", timeout=10)
    assert health.status_code == 200  # probes stay open
    anonymous = httpx.post(f"{service.api}/deployments/filter", json={}, timeout=10)
    assert anonymous.status_code == 401
    wrong = httpx.post(f"{service.api}/deployments/filter", json={}, timeout=10,
                       auth=(USER, "not-the-password"))
    assert wrong.status_code == 401
    allowed = httpx.post(f"{service.api}/deployments/filter", json={}, timeout=10,
                         auth=(USER, PASSWORD))
    assert allowed.status_code == 200

    # the UI learns that it must ask for the string (its login page)
    ui = httpx.get(service.api.removesuffix("/api") + "/ui-settings", timeout=10)
    assert ui.status_code == 200 and ui.json()["auth"] == "BASIC"
    assert ui.json()["api_url"] == service.api  # the UI calls this server, not port 4200


def test_the_server_refuses_a_config_outside_the_form(service):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    deployment = served_deployments(service)["adult-demo"]
    for field, value in (("epsilon", -1), ("synthesizer", "nope"), ("delta", 1.5)):
        with (get_client(sync_client=True) as client,
              pytest.raises(PrefectHTTPStatusError) as err):
            client.create_flow_run_from_deployment(deployment.id, parameters={field: value})
        assert err.value.response.status_code == 409
        assert field in err.value.response.text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless Chromium driven over the DevTools protocol (its own, built-in remote control:
    no extra package), one page."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", "--window-size=1280,1600"]

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        self.process = subprocess.Popen([CHROMIUM, *self.FLAGS, f"--user-data-dir={profile}",
                                         "about:blank"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=2**26)
        self.ids = 0

    def call(self, method: str, **params):
        self.ids += 1
        self.socket.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:  # events arrive in between: skip them
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.ids:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression,
                         returnByValue=True)["result"].get("value")

    def close(self):
        self.socket.close()
        stop(self.process)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_the_run_form_renders_in_the_ui(service, tmp_path):
    """The deployment's run form in Prefect's UI, in headless Chromium: signed in with the
    auth string, the form shows RunConfig's fields with their descriptions, and the
    screenshot is a real page, not a blank or an error."""
    import base64
    import io

    from PIL import Image

    deployment = served_deployments(service)["adult-demo"]
    origin = service.api.removesuffix("/api")
    browser = Browser(tmp_path / "profile")
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=origin + "/")
        time.sleep(1)
        # what the UI's sign-in form stores: the auth string, base64
        browser.evaluate(f"localStorage.setItem('prefect-password', "
                         f"btoa({json.dumps(AUTH)}))")
        browser.call("Page.navigate", url=f"{origin}/deployments/deployment/"
                                          f"{deployment.id}/run")
        wanted = ("Total privacy budget epsilon", "Synthesizer")
        text, deadline = "", time.monotonic() + 60
        while not all(w in text for w in wanted) and time.monotonic() < deadline:
            time.sleep(1)
            text = browser.evaluate("document.body ? document.body.innerText : ''") or ""
        png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()
    (tmp_path / "run-form.png").write_bytes(png)
    assert all(w in text for w in wanted), text[:2000]
    assert "adult-demo" in text and "Unauthenticated" not in text
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size[0] >= 1000 and len(image.getcolors(1 << 20) or []) > 50


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_the_release_report_opens_from_the_runs_artifact_in_the_ui(service, served_run,
                                                                    tmp_path):
    """The run's report artifact in Prefect's UI, in headless Chromium: the page shows the
    link to the release-safe report, and following it opens the report (served over HTTP,
    not a file:// link)."""
    import base64

    run, out, _, artifacts = served_run
    artifact = artifacts["release-report"]
    origin = service.api.removesuffix("/api")
    browser = Browser(tmp_path / "profile")
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=origin + "/")
        time.sleep(1)
        browser.evaluate(f"localStorage.setItem('prefect-password', "
                         f"btoa({json.dumps(AUTH)}))")
        # the run page and the release artifact, as an operator sees them (screenshots)
        for name, url, wanted in (
                ("run-page", f"{origin}/runs/flow-run/{run.id}", "publish: published"),
                ("release-artifact", f"{origin}/artifacts/artifact/{artifacts['release'].id}",
                 "data set 'adult' has spent")):
            browser.call("Page.navigate", url=url)
            text, deadline = "", time.monotonic() + 60
            while wanted not in text and time.monotonic() < deadline:
                time.sleep(1)
                text = browser.evaluate("document.body ? document.body.innerText : ''") or ""
            (tmp_path / f"{name}.png").write_bytes(base64.b64decode(
                browser.call("Page.captureScreenshot", format="png")["data"]))
            assert wanted in text, (name, text[:2000])
        browser.call("Page.navigate", url=f"{origin}/artifacts/artifact/{artifact.id}")
        link = link_of(artifact)
        find = (f"[...document.querySelectorAll('a')].map(a => a.href)"
                f".find(h => h === {json.dumps(link)}) || ''")
        href, deadline = "", time.monotonic() + 60
        while not href and time.monotonic() < deadline:
            time.sleep(1)
            href = browser.evaluate(find) or ""
        assert href == link, browser.evaluate("document.body.innerText")[:2000]
        browser.call("Page.navigate", url=href)
        text, deadline = "", time.monotonic() + 30
        while "epsilon" not in text and time.monotonic() < deadline:
            time.sleep(0.5)
            text = browser.evaluate("document.body ? document.body.innerText : ''") or ""
        title = browser.evaluate("document.title")
        png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()
    (tmp_path / "release-report.png").write_bytes(png)
    assert "epsilon" in text and "adult" in title.lower(), (title, text[:1000])


def test_prefect_deploy_takes_the_generated_prefect_yaml(service, tmp_path):
    """The documented alternative to serving: `prefect deploy` with a process work pool,
    from the prefect.yaml that `python -m flows.serve --prefect-yaml` prints."""
    from prefect.client.orchestration import get_client

    from flows.prefect_yaml import prefect_yaml

    spec = load_spec(service.home / "deployments" / f"{SMALL}.yaml")
    spec = spec.model_copy(update={"name": "pooled-small"})
    (tmp_path / "prefect.yaml").write_text(prefect_yaml([spec], ROOT, service.root,
                                                        pool="synth-test"))
    env = {**os.environ, "PREFECT_API_URL": service.api, "PREFECT_API_AUTH_STRING": AUTH,
           "PREFECT_HOME": str(service.home)}
    prefect = [sys.executable, "-m", "prefect"]
    for command in (["work-pool", "create", "synth-test", "--type", "process"],
                    ["--no-prompt", "deploy", "--all", "--prefect-file",
                     str(tmp_path / "prefect.yaml")]):
        done = subprocess.run(prefect + command, cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{FLOW}/pooled-small")
    assert deployment.work_pool_name == "synth-test"
    assert deployment.parameters["epsilon"] == 2.0 and deployment.parameters["rows"] == 800
    assert deployment.job_variables["env"]["SYNTH_OUTPUT_ROOT"] == str(service.root.resolve())
    [schedule] = deployment.schedules
    assert schedule.schedule.anchor_date == spec.schedule.anchor


def test_a_deployment_file_sending_out_outside_the_output_root_is_named(tmp_path, capsys,
                                                                       monkeypatch):
    from flows.serve import main
    from pipelines.paths import ROOT_ENV

    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "root"))  # main sets it: restored after

    folder = tmp_path / "deployments"
    folder.mkdir()
    bad = folder / "escape.yaml"
    bad.write_text("name: escape\nconfig: {input: data/adult/adult.data.gz, schema_file: "
                   f"schemas/adult.yaml, out: {tmp_path / 'elsewhere'}, epsilon: 1}}\n")
    assert main(["--deployments", str(folder), "--output-root", str(tmp_path / "root")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {bad}: config.out: ") and error.count("\n") == 1
