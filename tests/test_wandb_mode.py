"""W&B decides online/offline by itself, in seconds, and never prompts."""
import time

import pytest

from lightning_gen.loggers.wandb import WandbLogger, resolve_wandb_mode


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


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
