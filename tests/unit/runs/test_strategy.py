"""The DDP strategy a run gets: the collective timeout and the model's unused-parameter choice."""

from __future__ import annotations

import pytest


def test_ddp_strategy_names_get_the_collective_timeout_and_the_models_unused_parameter_choice() -> None:
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    from gen_common.errors import ConfigError
    from lightning_gen.models.gan import GAN
    from lightning_gen.runs.strategy import ddp_strategy

    ddp = ddp_strategy("ddp", 2.5, object())
    assert isinstance(ddp, DDPStrategy) and ddp._timeout == timedelta(minutes=2.5) and ddp._start_method == "popen"
    assert ddp._ddp_kwargs == {"find_unused_parameters": False}
    assert ddp_strategy("ddp_spawn", 1, GAN)._ddp_kwargs == {"find_unused_parameters": True}  # the GAN asks for it
    assert ddp_strategy("ddp_find_unused_parameters_false", 1, GAN)._ddp_kwargs == {
        "find_unused_parameters": False
    }  # the name wins
    assert ddp_strategy("ddp_fork", 1)._start_method == "fork"
    assert isinstance(
        ddp_strategy("auto", 1, devices=2, accelerator="cpu"), DDPStrategy
    )  # Lightning would pick DDP too
    assert ddp_strategy("auto", 1, devices=1) == "auto" and ddp_strategy("auto", 1, devices="auto") == "auto"
    assert ddp_strategy("deepspeed", 1) == "deepspeed"
    given = DDPStrategy()
    assert ddp_strategy(given, 1) is given  # an object is the user's explicit choice
    with pytest.raises(ConfigError, match="collective_timeout_min"):
        ddp_strategy("ddp", 0)
