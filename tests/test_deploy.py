"""deploy/ checked by the tools that will run it: nginx -t, systemd-analyze verify, docker compose config."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from axes.models import AccessAttempt

from gptoss_web.devtools.stack import wait_until
from gptoss_web.run import daphne_argv, free_port
from tests.factories import PASSWORD, UserFactory
from tests.live import live_web, sign_in

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = ["gptoss-web.service", "gptoss-reaper.service", "gptoss-gpu-worker@.service", "gptoss-web.target"]


def _need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if path is None:
        pytest.skip(f"{tool} is not installed here (apt-get install {tool} runs this check)")
    return path


def _nginx_site(tmp_path: Path, **listen: int) -> tuple[str, Path]:
    """Write deploy/nginx's site into a minimal main config with a throw-away certificate.

    With *listen* (http=, https=, upstream= ports) the site serves on loopback ports and proxies to a
    test Daphne; return the site's text and the main config's path.
    """
    openssl = _need("openssl")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    site = (DEPLOY / "nginx" / "gptoss-web.conf").read_text()
    site = site.replace("/etc/ssl/gptoss-web/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/ssl/gptoss-web/privkey.pem", str(tmp_path / "key.pem"))
    if listen:
        for old, new in [
            ("listen 80;", f"listen 127.0.0.1:{listen['http']};"),
            ("listen [::]:80;", ""),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{listen['https']} ssl http2;"),
            ("listen [::]:443 ssl http2;", ""),
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{listen['upstream']};"),
        ]:
            assert old in site, f"deploy/nginx/gptoss-web.conf no longer has {old!r}: update this test"
            site = site.replace(old, new)
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n access_log off;\n"
        f" client_body_temp_path {tmp_path}/body;\n proxy_temp_path {tmp_path}/proxy;\n"
        f" include {tmp_path}/site.conf;\n}}\n"
    )
    return site, tmp_path / "nginx.conf"


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    """Debian's nginx parses the site inside a minimal main config, with a throw-away certificate."""
    nginx = _need("nginx")
    site, conf = _nginx_site(tmp_path)
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    # What long streams need: WebSocket upgrade and an hour of read timeout on /ws/.
    ws = site[site.index("location /ws/") :]
    assert "proxy_set_header Upgrade $http_upgrade" in ws and "proxy_read_timeout 3600s" in ws


@contextmanager
def _nginx(tmp_path: Path, https: int, upstream: int) -> Iterator[str]:
    """Serve deploy/nginx's site on port *https*, in front of Daphne on *upstream*; yield its URL."""
    nginx = _need("nginx")
    _, conf = _nginx_site(tmp_path, http=free_port(), https=https, upstream=upstream)
    process = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: process.poll() is not None or _accepts(https), 30, "nginx listens")
        assert process.poll() is None, process.communicate()[0]
        yield f"https://127.0.0.1:{https}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_behind_the_nginx_site_a_spoofed_x_forwarded_for_moves_neither_the_lock_out_nor_the_logs(
    tmp_path: Path,
) -> None:
    """The deploy case: the client's address is the one nginx saw, whatever X-Forwarded-For the client sent.

    The client connects from 127.0.0.3, nginx from 127.0.0.1 (the one trusted proxy). A client that reaches
    Daphne directly, from 127.0.0.2, is not believed either.
    """
    UserFactory(username="alice")
    UserFactory(username="bob")
    https = free_port()
    # As in deploy/.env.example: nginx on this host is the trusted proxy, forms come from the site's origin.
    web = live_web(
        GPTOSS_TRUSTED_PROXIES="127.0.0.1", DJANGO_CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{https}"
    )
    with web as stack, _nginx(tmp_path, https, stack.web_port) as site:
        spoofed = [
            sign_in(
                site,
                "alice",
                "wrong",
                source="127.0.0.3",
                headers={"X-Forwarded-For": f"10.9.0.{n}, 127.0.0.1"},
            )
            for n in range(6)
        ]
        assert [status for status, _ in spoofed] == [200] * 4 + [429] * 2
        status, page = sign_in(
            site, "alice", PASSWORD, source="127.0.0.3", headers={"X-Forwarded-For": "10.9.0.9"}
        )
        assert status == 429 and "Too many attempts" in page
        # Straight to Daphne from an address that is no trusted proxy: its header counts for nothing.
        direct = [
            sign_in(
                stack.base_url, "bob", "wrong", source="127.0.0.2", headers={"X-Forwarded-For": f"10.9.1.{n}"}
            )
            for n in range(6)
        ]
        assert [status for status, _ in direct] == [200] * 4 + [429] * 2
        status, page = sign_in(
            stack.base_url, "bob", PASSWORD, source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.3"}
        )
        assert status == 429 and "Too many attempts" in page
        log = stack.output("web")
    attempts = dict(AccessAttempt.objects.values_list("username", "ip_address"))
    assert attempts == {"alice": "127.0.0.3", "bob": "127.0.0.2"}
    # The access log shows the same addresses, never a spoofed one (django-axes masks them in its own).
    assert '127.0.0.3 "POST /accounts/login/" 429' in log and '127.0.0.2 "POST /accounts/login/" 429' in log
    assert "10.9." not in log


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


def test_no_daphne_believes_forwarded_headers_itself() -> None:
    """Daphne's --proxy-headers takes the left-most X-Forwarded-For, which the client writes: none uses it.

    Each deployment trusts its own proxy instead: nginx on the host (127.0.0.1) for systemd, the compose
    network's gateway (through which the host's nginx reaches the container) for docker compose.
    """
    files = [path for path in DEPLOY.rglob("*") if path.is_file()] + [ROOT / "Makefile"]
    uses = [
        f"{path.relative_to(ROOT)}: {line}"
        for path in files
        for line in path.read_text().splitlines()
        if "--proxy-headers" in line and not line.lstrip().startswith("#")
    ]
    assert uses == []
    assert "--proxy-headers" not in daphne_argv("127.0.0.1", 8000)
    assert re.search(r"^GPTOSS_TRUSTED_PROXIES=127\.0\.0\.1$", (DEPLOY / ".env.example").read_text(), re.M)
    compose = _compose()
    gateway = compose["networks"]["default"]["ipam"]["config"][0]["gateway"]
    assert compose["services"]["web"]["environment"]["GPTOSS_TRUSTED_PROXIES"] == gateway
    site = (DEPLOY / "nginx" / "gptoss-web.conf").read_text()
    assert "$proxy_add_x_forwarded_for" not in site
    assert site.count("proxy_set_header X-Forwarded-For $remote_addr;") == site.count("proxy_pass ")


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


def test_only_the_gpu_image_installs_the_worker_extra_and_build_tools() -> None:
    """The web image (Daphne, reaper) loads no llama.cpp: without the `worker` extra it compiles nothing."""
    web = (DEPLOY / "docker" / "Dockerfile").read_text()
    gpu = (DEPLOY / "docker" / "Dockerfile.gpu").read_text()
    code = [line for line in web.splitlines() if not line.lstrip().startswith("#")]
    installs = [line for line in code if "pip install" in line]
    assert installs and all(re.search(r"pip install (-e )?\.$", line.strip()) for line in installs), installs
    for tool in ("build-essential", "cmake", "ninja-build", "gcc", "CMAKE_ARGS", "apt-get install", "worker"):
        assert not [line for line in code if tool in line], f"deploy/docker/Dockerfile mentions {tool}"
    assert re.search(r'pip install -e "\.\[worker\]"', gpu) and "GGML_CUDA=on" in gpu
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install --quiet -e ".[embedded,dev,worker]"' in makefile
    # The web side's packages do not need what the extra holds: pyproject.toml keeps it out of the base.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    for package in ("llama-cpp-python", "nvidia-ml-py", "gguf", "quicktok-v1", "numpy"):
        assert package not in base, f"{package} is a base dependency again: the web image would install it"
        assert any(d.startswith(package) for d in project["optional-dependencies"]["worker"]), package
