"""deploy/ checked by the tools that will run it: nginx -t, systemd-analyze verify, docker compose config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = ["gptoss-web.service", "gptoss-reaper.service", "gptoss-gpu-worker@.service", "gptoss-web.target"]


def _need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if path is None:
        pytest.skip(f"{tool} is not installed here (apt-get install {tool} runs this check)")
    return path


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    """Debian's nginx parses the site inside a minimal main config, with a throw-away certificate."""
    nginx = _need("nginx")
    openssl = _need("openssl")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    site = (DEPLOY / "nginx" / "gptoss-web.conf").read_text()
    site = site.replace("/etc/ssl/gptoss-web/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/ssl/gptoss-web/privkey.pem", str(tmp_path / "key.pem"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n access_log off;\n"
        f" client_body_temp_path {tmp_path}/body;\n proxy_temp_path {tmp_path}/proxy;\n"
        f" include {tmp_path}/site.conf;\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    # What long streams need: WebSocket upgrade and an hour of read timeout on /ws/.
    ws = site[site.index("location /ws/") :]
    assert "proxy_set_header Upgrade $http_upgrade" in ws and "proxy_read_timeout 3600s" in ws


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """systemd-analyze verify the units, with the install root pointed at this checkout (its .venv exists)."""
    analyze = _need("systemd-analyze")
    env_file = tmp_path / "env"
    env_file.write_text("DJANGO_SECRET_KEY=x\n")
    paths = []
    for unit in UNITS:
        text = (DEPLOY / "systemd" / unit).read_text()
        text = text.replace("/etc/gptoss-web/env", str(env_file)).replace("/opt/gptoss-web", str(ROOT))
        name = unit.replace("@.service", "@0.service")
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    result = subprocess.run(
        [analyze, "verify", *paths],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "info"},
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(tmp_path) in line or "gptoss" in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_the_gpu_worker_unit_pins_its_gpu_and_its_queue() -> None:
    unit = (DEPLOY / "systemd" / "gptoss-gpu-worker@.service").read_text()
    assert "Environment=CUDA_VISIBLE_DEVICES=%i" in unit
    assert "EnvironmentFile=-/etc/gptoss-web/worker-%i.env" in unit
    assert '--queues "$${GPTOSS_QUEUE:-gpu.$${GPTOSS_MODEL_NAME:-$$GPTOSS_MODEL}}"' in unit


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_the_compose_file_has_every_service_wired_to_postgres_and_redis() -> None:
    """Checked here with PyYAML; `docker compose config` below checks it fully where the client exists."""
    compose = _compose()
    assert set(compose["services"]) == {"postgres", "redis", "web", "reaper", "gpu-worker"}
    for name in ("web", "reaper", "gpu-worker"):
        service = compose["services"][name]
        assert service["environment"]["DATABASE_URL"].endswith("@postgres:5432/gptoss")
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker = compose["services"]["gpu-worker"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert worker["build"]["dockerfile"] == "deploy/docker/Dockerfile.gpu"
    assert "GGML_CUDA=on" in (DEPLOY / "docker" / "Dockerfile.gpu").read_text()
    assert "manage.py" in " ".join(compose["services"]["reaper"]["command"])
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (DEPLOY / "docker" / dockerfile).read_text()
        for copied in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M):
            assert (ROOT / copied).exists(), f"{dockerfile} copies {copied}, which does not exist"


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    command: list[str] | None = None
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        command = [docker, "compose"]
    elif shutil.which("docker-compose"):
        command = [str(shutil.which("docker-compose"))]
    if command is None:
        pytest.skip("no docker compose client here (the docker CLI lacks the compose plugin)")
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copy(DEPLOY / ".env.example", tmp_path / "deploy" / ".env")
    result = subprocess.run(
        [*command, "-f", str(tmp_path / "deploy" / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path / "deploy",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_every_variable_the_code_reads_is_in_the_env_example() -> None:
    example = (DEPLOY / ".env.example").read_text()
    read = set()
    for path in [*ROOT.glob("gptoss_web/*.py"), *ROOT.glob("inference/**/*.py"), *ROOT.glob("chat/**/*.py")]:
        read |= set(re.findall(r'env_(?:str|int|bool|list)\(\s*"([A-Z_]+)"', path.read_text()))
    undocumented = {name for name in read if not re.search(rf"^#? ?{name}=", example, flags=re.M)}
    # make run's own knobs are documented in the README.
    assert undocumented <= {"GPTOSS_MAX_ANSWER_TOKENS", "GPTOSS_MAX_TOOL_CALLS"}, undocumented
