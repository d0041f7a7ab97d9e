"""deploy/ checked by the tools that judge it: hadolint (Dockerfile), `docker compose config`,
`kubectl kustomize` + kubernetes-validate (every overlay, strict API schemas), `systemd-analyze
verify` and `security --offline`, `promtool check rules` / `test rules` / `check config`; the
metric names used by the alert rules and the Grafana dashboard against the names the code
exports (read from the source and scraped from a running node); the wheel that the image
installs carries every file of the packages.

A missing tool skips its test on a workstation and fails it in CI (`CI` set).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from infernode.node import Node
from infernode.settings import load_settings
from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PACKAGES = ("common", "dicom_node", "inference", "hl7_fhir", "workers", "infernode")
TIMEOUT = 120


def tool(name: str) -> str:
    """The path of a command-line tool (the virtualenv's bin folder first)."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}"
                                     f"{os.environ.get('PATH', '')}")
    if found is None:
        message = f"{name} is not installed (docs/DEPLOY.md lists the deploy checks' tools)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


# ------------------------------------------------------------------------- container image


DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_a_non_root_image_with_models_and_a_healthcheck() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2, "multi-stage: a build stage and a slim runtime stage"
    final = lines[lines.index(stages[-1]):]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users, "the runtime stage names its user"
    assert all(not u.startswith(("0", "root")) for u in users)
    # A numeric user: Kubernetes' runAsNonRoot can check it.
    assert re.fullmatch(r"(\d+|\$\{\w+\}):(\d+|\$\{\w+\})", users[-1])
    assert any(line.startswith("HEALTHCHECK") for line in final)
    assert "/health/live" in "\n".join(final)
    assert any(line.startswith("ARG TORCH_INDEX_URL=") for line in lines), "CPU / CUDA switch"
    assert "cp -r /src/models /opt/infernode/models" in "\n".join(lines), "demo models"
    # The context is the repository; the .dockerignore admits what the image needs, only that.
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[[line.strip() for line in ignore].index("**")] == "**", "deny all first"
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert admitted == {"pyproject.toml", "README.md", "models", *PACKAGES}
    assert all((REPO / name).exists() for name in admitted)


def _wheel_files(tmp_path: Path) -> set[str]:
    """The file names in the wheel built (non-editable, as the image installs it) from the
    working tree's tracked and untracked, not ignored, files."""
    listed = run("git", "ls-files", "-co", "--exclude-standard", "--", "pyproject.toml",
                 "README.md", *PACKAGES, cwd=REPO)
    assert listed.returncode == 0, listed.stderr
    source = tmp_path / "src"
    for name in listed.stdout.splitlines():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "--no-cache-dir", "-q", "-w", str(tmp_path / "wheel"), str(source))
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("infernode-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_ships_every_file_of_the_packages(tmp_path: Path) -> None:
    """Migrations (env.py, script.py.mako, versions/), model cards, console templates and
    static files: a non-editable install (the image) runs without the checkout."""
    shipped = _wheel_files(tmp_path)
    listed = run("git", "ls-files", "-co", "--exclude-standard", "--", *PACKAGES, cwd=REPO)
    needed = {name for name in listed.stdout.splitlines() if (REPO / name).is_file()}
    assert "infernode/migrations/env.py" in needed
    assert "infernode/migrations/script.py.mako" in needed
    missing = sorted(needed - shipped)
    assert not missing, f"not in the wheel (pyproject package-data): {missing}"
    assert "infernode-0.1.0.dist-info/entry_points.txt" in shipped


# ------------------------------------------------------------------------------- compose


COMPOSE = DEPLOY / "compose"
COMPOSE_SECRETS = {"INFERNODE_DB_PASSWORD": "db-secret", "INFERNODE_REDIS_PASSWORD": "redis-secret",
                   "GRAFANA_ADMIN_PASSWORD": "grafana-secret", "INFERNODE_API_TOKEN": "api-secret"}


def _compose_command() -> list[str]:
    if shutil.which("docker") and run("docker", "compose", "version").returncode == 0:
        return ["docker", "compose"]
    return [tool("docker-compose")]


def _compose_config(tmp_path: Path, secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # An empty env file: a .env the operator wrote beside compose.yaml is not read.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS} | secrets
    return run(*_compose_command(), "--env-file", str(empty), "-f", str(COMPOSE / "compose.yaml"),
               "--profile", "demo", "--profile", "monitoring", "config", cwd=COMPOSE, env=env)


def test_compose_config_is_valid_and_locked_down(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"node", "worker-cpu", "redis", "postgres", "orthanc", "prometheus",
            "grafana"} <= set(services)
    for name in ("node", "worker-cpu"):
        service = services[name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        mounts = {v.split(":")[0]: v.split(":")[1] for v in service["volumes"]
                  if isinstance(v, str)} or {v["source"]: v["target"] for v in service["volumes"]}
        # node and workers share the spool and outputs at the same path
        assert mounts.get("infernode-data") == "/var/lib/infernode", service["volumes"]
        env = service["environment"]
        assert env["INFERNODE_DATABASE__URL"].startswith("postgresql+psycopg://infernode:db-secret@")
        assert env["INFERNODE_WORKERS__BROKER_URL"] == "redis://:redis-secret@redis:6379/0"
    assert services["worker-cpu"]["command"][0] == "worker"
    assert {"infernode-data", "postgres-data", "redis-data"} <= set(config["volumes"])


def test_compose_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    secrets = {k: v for k, v in COMPOSE_SECRETS.items() if k != "INFERNODE_DB_PASSWORD"}
    result = _compose_config(tmp_path, secrets)
    assert result.returncode != 0
    assert "make-secrets.sh" in result.stdout + result.stderr


@pytest.mark.parametrize("path", [COMPOSE / "infernode.yaml",
                                  DEPLOY / "kubernetes" / "base" / "infernode.yaml"])
def test_shipped_settings_files_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("INFERNODE_"):
            monkeypatch.delenv(key)
    settings = load_settings(path)
    assert settings.data_dir == Path("/var/lib/infernode")
    assert settings.dicom.spool_dir == Path("/var/lib/infernode/spool")
    assert settings.web.host == "0.0.0.0"
    assert set(settings.workers.queues) == {"ich", "stroke", "fracture"}


# ---------------------------------------------------------------------------- kubernetes


OVERLAYS = sorted(p for p in (DEPLOY / "kubernetes" / "overlays").iterdir() if p.is_dir())


def _render(overlay: Path) -> list[dict[str, Any]]:
    result = run(tool("kubectl"), "kustomize", str(overlay))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlay_renders_and_validates_against_the_api_schemas(overlay: Path) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        tool("kubernetes-validate")  # skips or fails with the message
        raise
    docs = _render(overlay)
    assert docs
    for doc in docs:
        # strict: an unknown or misspelt field is an error, not ignored
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are referenced, never shipped"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlay_pods_are_locked_down_and_probed(overlay: Path) -> None:
    docs = _render(overlay)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("NetworkPolicy", "infernode-default-deny") in kinds
    for name, spec in _pod_specs(docs):
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "infernode-secrets", name
    (node,) = [d for d in docs if d["kind"] == "StatefulSet"
               and d["metadata"]["name"] == "infernode-node"]
    container = node["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert {"name": "data", "mountPath": "/var/lib/infernode"} in container["volumeMounts"]
    assert node["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    for name, spec in _pod_specs(docs):
        if name.startswith("infernode-worker"):
            claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
                      if "persistentVolumeClaim" in v]
            assert claims == ["data-infernode-node-0"], name  # the node's spool, same path


def test_overlays_cover_bundled_and_external_services_and_gpu_workers() -> None:
    rendered = {p.name: _render(p) for p in OVERLAYS}
    bundled = {d["metadata"]["name"] for d in rendered["bundled"]}
    external = {d["metadata"]["name"] for d in rendered["external"]}
    assert {"infernode-postgres", "infernode-redis"} <= bundled
    assert not {"infernode-postgres", "infernode-redis"} & external
    gpu = [spec for docs in rendered.values() for name, spec in _pod_specs(docs)
           if name == "infernode-worker-gpu"]
    assert gpu, "a GPU worker Deployment in some overlay"
    assert gpu[0]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


# ------------------------------------------------------------------------------- systemd


SYSTEMD = DEPLOY / "systemd"


def _units_with_a_real_binary(tmp_path: Path) -> list[Path]:
    """The unit files, ExecStart pointing at this checkout's `infernode` instead of
    /opt/infernode/venv (verify checks that the command exists); the worker template as one
    instance whose name carries an escaped comma, as `systemd-escape ich,stroke` gives."""
    binary = Path(sys.executable).parent / "infernode"
    assert binary.is_file()
    units = []
    for unit, name in (("infernode.service", "infernode.service"),
                       ("infernode-worker@.service", r"infernode-worker@ich\x2cstroke.service")):
        text = (SYSTEMD / unit).read_text()
        assert "/opt/infernode/venv/bin/infernode" in text
        target = tmp_path / name
        target.write_text(text.replace("/opt/infernode/venv/bin/infernode", str(binary)))
        units.append(target)
    return units


def test_systemd_units_verify_cleanly(tmp_path: Path) -> None:
    units = _units_with_a_real_binary(tmp_path)
    result = run(tool("systemd-analyze"), "verify", *map(str, units), cwd=tmp_path)
    # verify reports unknown keys and bad values on stderr and still exits 0
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr)


def test_systemd_units_are_hardened(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    for unit in _units_with_a_real_binary(tmp_path):
        text = unit.read_text()
        for directive in ("User=infernode", "NoNewPrivileges=yes", "ProtectSystem=strict",
                          "PrivateTmp=yes", "ReadWritePaths=/var/lib/infernode",
                          "Restart=on-failure", "CapabilityBoundingSet=\n"):
            assert directive in text, (unit.name, directive)
        # systemd's exposure score, shown as 0 (safe) .. 10, given as 0 .. 100: above 3.0
        # fails
        result = run(analyze, "security", "--offline=yes", "--threshold=30", str(unit),
                     cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
        assert "Overall exposure level" in result.stdout


# ---------------------------------------------------------------------------- prometheus


PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))


def test_alert_rules_pass_promtool() -> None:
    assert RULE_FILES
    result = run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_on_their_unit_test_series() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    result = run(tool("promtool"), "test", "rules", *map(str, tests), cwd=PROMETHEUS / "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_configs_pass_promtool() -> None:
    configs = sorted(PROMETHEUS.glob("prometheus*.yml"))
    assert len(configs) == 2
    result = run(tool("promtool"), "check", "config", "--syntax-only", *map(str, configs))
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------ metric names: rules and dashboard vs code


METRIC_CLASSES = {
    "Counter": "counter", "CounterMetricFamily": "counter",
    "Gauge": "gauge", "GaugeMetricFamily": "gauge",
    "Histogram": "histogram", "HistogramMetricFamily": "histogram",
    "Summary": "summary", "SummaryMetricFamily": "summary",
    "Info": "info", "InfoMetricFamily": "info",
}
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}
PROMETHEUS_OWN = {"up"}
"""Series Prometheus writes itself for every target."""
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}


def _metric_kind(call: ast.Call, wrappers: dict[str, str]) -> str | None:
    func = call.func
    cls = func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else "")
    return METRIC_CLASSES.get(cls) or wrappers.get(cls)


def _wrappers(tree: ast.Module) -> dict[str, str]:
    """Module functions that return a metric built on their first parameter's name
    (e.g. `def _family(name, doc, labels): return GaugeMetricFamily(name, ...)`)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.args.args:
            first = node.args.args[0].arg
            for ret in ast.walk(node):
                if (isinstance(ret, ast.Return) and isinstance(ret.value, ast.Call)
                        and ret.value.args and isinstance(ret.value.args[0], ast.Name)
                        and ret.value.args[0].id == first):
                    kind = _metric_kind(ret.value, {})
                    if kind:
                        found[node.name] = kind
    return found


def _code_metric_families() -> dict[str, str]:
    """Every metric family the packages define: name -> type, read from their source
    (a family registered only under some settings, e.g. certificate expiry, counts too)."""
    families: dict[str, str] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            constants = {t.id: node.value.value for node in tree.body
                         if isinstance(node, ast.Assign | ast.AnnAssign)
                         and isinstance(node.value, ast.Constant)
                         and isinstance(node.value.value, str)
                         for t in (node.targets if isinstance(node, ast.Assign)
                                   else [node.target]) if isinstance(t, ast.Name)}
            wrappers = _wrappers(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                kind = _metric_kind(node, wrappers)
                first = node.args[0]
                name = (first.value if isinstance(first, ast.Constant) else
                        constants.get(first.id) if isinstance(first, ast.Name) else None)
                if kind and isinstance(name, str) and re.fullmatch(
                        r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
                    families[name.removesuffix("_total") if kind == "counter" else name] = kind
    return families


def _series_names(families: dict[str, str]) -> set[str]:
    return {name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind]}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, label names and
    values, durations and numbers left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = match.group()
        if token[0].isdigit() or token in PROMQL_WORDS:
            continue
        if text[match.end():].lstrip().startswith("("):
            continue  # a function
        names.add(token)
    return names


def test_promql_name_reader() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{x="b c"}[5m])))'
        ' > 2 and on (job) b_total unless c - time() < 30 * 86400 and 1e9 > d') == {
        "a_seconds_bucket", "b_total", "c", "d"}


def _rule_expressions() -> dict[str, str]:
    found = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found[f"{path.name}: {rule.get('alert') or rule.get('record')}"] = rule["expr"]
    return found


def _dashboard_expressions() -> dict[str, str]:
    found = {}
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found[f"{path.name}: {panel['title']} {target['refId']}"] = target["expr"]
    return found


def test_rules_and_dashboard_name_only_metrics_the_code_exports() -> None:
    exported = _series_names(_code_metric_families())
    expressions = _rule_expressions() | _dashboard_expressions()
    unknown = {where: sorted(promql_metric_names(expr) - exported - PROMETHEUS_OWN)
               for where, expr in expressions.items()}
    assert not {w: u for w, u in unknown.items() if u}


def test_rules_and_dashboard_cover_every_area() -> None:
    areas = {
        "ingest": "infernode_instances_received_total", "completion":
        "infernode_study_completions_total", "jobs": "infernode_dead_letters",
        "queue": "infernode_queue_depth", "model time": "infernode_job_stage_seconds_bucket",
        "deliveries": "infernode_delivery_dead", "dead letters": "infernode_delivery_dead",
        "disk": "infernode_spool_free_bytes",
        "certificates": "infernode_certificate_expiry_timestamp_seconds",
    }
    for source in (_rule_expressions(), _dashboard_expressions()):
        used = set().union(*map(promql_metric_names, source.values()))
        assert not {area for area, metric in areas.items() if metric not in used}
    stages = " ".join(_rule_expressions().values())
    assert 'stage="run"' in stages, "model time is the run stage of a job"


def test_grafana_dashboard_is_provisioned_on_its_datasource() -> None:
    (path,) = (DEPLOY / "grafana" / "dashboards").glob("*.json")
    dashboard = json.loads(path.read_text())
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]


def test_a_running_node_exports_only_families_the_source_reader_knows(tmp_path: Path) -> None:
    """The source reader above is what the rules are checked against; a node started on
    defaults must not export a family it missed (which would make that check blind)."""
    web_port = free_port()
    settings = load_settings(None, **{
        "data_dir": str(tmp_path),
        "database": {"url": f"sqlite:///{tmp_path / 'infernode.db'}"},
        "dicom": {"port": 0, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0},
        "web": {"enabled": True, "port": web_port},
        "inference": {"model_paths": [str(REPO / "models")]},
    })
    node = Node.build(settings)
    node.start()
    try:
        base = f"http://127.0.0.1:{web_port}"
        assert httpx.get(f"{base}/health/live", timeout=30).status_code == 200
        response = httpx.get(f"{base}/metrics", timeout=30)
        assert response.status_code == 200
    finally:
        node.stop()
    scraped = set()
    for family in text_string_to_metric_families(response.text):
        # a labelled family with no child yet shows only its HELP and TYPE lines
        scraped |= {s.name for s in family.samples} or {
            family.name + SUFFIXES.get(family.type, ("",))[0]}
    scraped = {name for name in scraped if name.startswith("infernode_")}
    assert {"infernode_spool_free_bytes", "infernode_jobs",
            "infernode_instances_received_total"} <= scraped
    assert sorted(scraped - _series_names(_code_metric_families())) == []
