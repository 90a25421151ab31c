from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_parses_and_pins_images() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"postgres", "kafka", "clickhouse"} <= set(services)
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image must be pinned: {image}"
        assert "healthcheck" in service, name
    assert "wal_level=logical" in services["postgres"]["command"]
    # the demo schema is what the compose postgres initialises with
    assert any("cdc/demo/schema.sql" in v for v in services["postgres"]["volumes"])
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), "published on loopback only"
