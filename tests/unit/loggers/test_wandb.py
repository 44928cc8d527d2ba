"""W&B decides online/offline by itself, in seconds, and never prompts."""

import http.server
import socket
import threading
import time

import pytest

from gen_common.errors import LightningGenError
from lightning_gen.loggers.wandb import WandbLogger, resolve_wandb_mode, wandb_base_url


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))  # no user settings file


def closed_port() -> int:
    """A loopback port nothing listens on (connecting is refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_api_key_means_offline_at_once(no_wandb_env):
    start = time.monotonic()
    assert resolve_wandb_mode("auto") == ("offline", "no W&B API key")
    assert time.monotonic() - start < 1.0


def test_key_but_unreachable_host_means_offline_within_the_probe(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:1")  # nothing listens on 443 there
    start = time.monotonic()
    mode, reason = resolve_wandb_mode("auto", probe_timeout_s=2.0)
    assert mode == "offline" and "unreachable" in reason
    assert time.monotonic() - start < 5.0


def test_environment_and_explicit_modes_win(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto")[0] == "disabled"
    assert resolve_wandb_mode("offline")[0] == "offline"


def test_logger_goes_offline_and_prints_one_sync_line(no_wandb_env, tmp_path, capsys):
    logger = WandbLogger(project="t", save_dir=str(tmp_path), id="abc123")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.experiment.finish()
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "W&B offline" in line]
    assert len(lines) == 1 and "wandb sync" in lines[0] and "offline-run-" in lines[0]
    assert list(tmp_path.glob("wandb/offline-run-*abc123/run-abc123.wandb"))


def test_probe_tests_the_server_wandb_will_dial(no_wandb_env, monkeypatch, tmp_path):
    """Not api.wandb.ai: W&B's own default (0.31: forge.coreweave.com), its settings file, WANDB_BASE_URL."""
    import wandb

    assert wandb_base_url() == wandb.Settings().base_url
    settings = tmp_path / "wandb-config" / "settings"
    settings.parent.mkdir()
    settings.write_text("[default]\nbase_url = http://127.0.0.1:5\n")
    assert wandb_base_url() == "http://127.0.0.1:5"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto")[1].startswith("http://127.0.0.1:5 unreachable")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("WANDB_BASE_URL", url)  # the environment beats the settings file, as in W&B
        assert resolve_wandb_mode("auto") == ("online", f"{url} reachable")
    finally:
        server.shutdown()


def test_online_with_unreachable_server_fails_fast_with_one_paragraph(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("WANDB_BASE_URL", url)
    start = time.monotonic()
    with pytest.raises(
        LightningGenError,
        match=rf"cannot reach its server {url} \(Connection refused\).*--run.wandb=offline.*--run.wandb=auto.*WANDB_BASE_URL",
    ):
        resolve_wandb_mode("online")
    assert time.monotonic() - start < 2.0

    with socket.socket() as silent:  # accepts connections (backlog), never answers: bounded by the probe
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(LightningGenError, match=r"no answer within 1 s"):
            resolve_wandb_mode("online", probe_timeout_s=1.0)
        assert time.monotonic() - start < 3.0


def test_online_without_key_says_how_to_log_in(no_wandb_env):
    with pytest.raises(LightningGenError, match=r"needs an API key for https?://\S+, and none is set.*wandb login"):
        resolve_wandb_mode("online")
