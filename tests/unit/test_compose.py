"""docker-compose.yml is valid and starts the same processes, with the same variables, as
`make run` (scripts/stack.py). No Docker engine runs here, so this is how the file stays right."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from scripts.stack import processes
from services.common.config import ROOT

COMPOSE = ROOT / "docker-compose.yml"
# Variables compose adds because containers differ from local processes: where to bind.
CONTAINER_ONLY = {"_HOST"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_is_valid_for_docker_compose():
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed: `make tools` installs it (Debian package docker-compose)"
    result = subprocess.run([tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("proc", processes(databases={s: "x" for s in ("identity", "tracking", "ledger", "redemption")},
                                           redis_url="x"), ids=lambda p: p.name)
def test_compose_runs_the_same_process_with_the_same_variables(compose, proc):
    service = compose["services"].get(proc.name)
    assert service is not None, f"docker-compose.yml has no service {proc.name}"
    assert service["command"] == ["python", "-m", proc.module]
    env = service["environment"]
    assert env["CASHBACK_ENV"] == "dev"
    missing = set(proc.env) - set(env)
    assert not missing, f"{proc.name}: compose lacks {sorted(missing)}"
    extra = {k for k in env if k not in proc.env and k not in {"CASHBACK_ENV", "LOG_LEVEL"}
             and not any(k.endswith(suffix) for suffix in CONTAINER_ONLY)}
    assert not extra, f"{proc.name}: compose sets {sorted(extra)} that make run does not"
    port_var = f"{proc.name.upper()}_PORT"
    assert env[port_var] == proc.env[port_var]


def test_every_container_is_restarted_when_it_exits_as_make_run_restarts_its_processes():
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed: `make tools` installs it (Debian package docker-compose)"
    result = subprocess.run([tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]  # with the shared x-service block merged in
    for name, service in resolved.items():
        assert service.get("restart") in {"unless-stopped", "always"}, f"{name} is not restarted when it exits"


def test_every_service_waits_for_what_it_needs_to_be_healthy(compose):
    for name, service in compose["services"].items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dependency in service.get("depends_on", {}).values():
            assert dependency == {"condition": "service_healthy"}
