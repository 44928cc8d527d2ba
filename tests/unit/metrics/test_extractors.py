"""Feature extractors: the autocast precision and its FID deviation go on the protocol card."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gen_common.errors import ConfigError
from lightning_gen.metrics.extractors import ImageFeatureExtractor
from tests.helpers.metrics import ProjectionExtractor, fake_extractor


def test_precision_goes_on_the_card(tmp_path: Path) -> None:
    fp32 = fake_extractor()
    bf16 = ImageFeatureExtractor(
        ProjectionExtractor(), "projection", {"source": "test", "sha256": "0" * 64}, "none", rgb=True, precision="bf16"
    )
    assert fp32.describe()["autocast"] == "off" and "bf16_fid_deviation" not in fp32.describe()
    card = bf16.describe()
    assert card["autocast"] == "bf16" and card["features_dtype"] == "float32"
    assert "FID" in card["bf16_fid_deviation"] and "relative" in card["bf16_fid_deviation"]
    images = torch.rand(6, 3, 16, 16)
    assert fp32(images)["2048"].dtype == bf16(images)["2048"].dtype == torch.float32
    with pytest.raises(ConfigError, match="precision"):
        ImageFeatureExtractor(ProjectionExtractor(), "projection", {}, "none", rgb=True, precision="fp16")  # type: ignore[arg-type]
