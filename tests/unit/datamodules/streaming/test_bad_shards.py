"""A shard set that is missing, truncated (a chunk cut short or deleted), half-written, of another format
version, not ours, or of the other kind: one paragraph each, before anything is read, and no file changes.
Through ``lightning-gen fit``: exit 1, that paragraph, and no run directory."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from datamodules.streaming import ShardImageDataModule, ShardTokenDataModule
from datamodules.streaming.manifest import MANIFEST_NAME
from gen_common.errors import ConfigError, CorruptDataError, DataNotFoundError, UserError
from tests.helpers.shards import make_image_shards


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_shards(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def shards(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "shards"))


def _first_chunk(shards: Path) -> Path:
    return shards / "train" / json.loads((shards / "train" / "index.json").read_text())["chunks"][0]["filename"]


def _cut(shards: Path) -> None:
    chunk = _first_chunk(shards)
    chunk.write_bytes(chunk.read_bytes()[:-10])


def _delete(shards: Path) -> None:
    _first_chunk(shards).unlink()


def _marker(shards: Path, **changes: object) -> None:
    path = shards / MANIFEST_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _no_marker(shards: Path) -> None:
    (shards / MANIFEST_NAME).unlink()


def _missing(shards: Path) -> None:
    shutil.rmtree(shards)


BAD: dict[str, tuple[Callable[[Path], None], type[UserError], str]] = {
    "missing": (_missing, DataNotFoundError, r"The shard set \S+ does not exist .* Fix: write it with `lightning-gen prepare"),
    "chunk cut short": (_cut, CorruptDataError, r"is truncated: train/chunk-\d-\d\.bin has \d+ bytes, index\.json says \d+\."),
    "chunk deleted": (_delete, CorruptDataError, r"is truncated: train/chunk-\d-\d\.bin is missing\. .* Fix: copy the set again"),
    "half-written": (
        lambda s: _marker(s, complete=False),
        CorruptDataError,
        r"is a half-written shard set: its `lightning-gen prepare` stopped .* Fix: delete it and run",
    ),
    "other version": (
        lambda s: _marker(s, version=99),
        CorruptDataError,
        r"written in shard format 'lightning_gen.shards' version 99; this lightning_gen reads .* version 1\. Fix: rewrite",
    ),
    "not ours": (
        _no_marker,
        CorruptDataError,
        r"holds LitData datasets \(train/index.json, val/index.json\) but no lightning_gen_shards.json",
    ),
}  # fmt: skip


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")} if folder.exists() else {}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_shard_set_is_one_paragraph_and_changes_nothing(shards: Path, case: str) -> None:
    damage, error, pattern = BAD[case]
    damage(shards)
    before = _snapshot(shards)
    dm = ShardImageDataModule(str(shards), batch_size=4)
    with pytest.raises(error) as err:
        dm.prepare_data()
    message = str(err.value)
    assert re.search(pattern, message), message
    assert "\n" not in message and message.endswith("Nothing was written.")
    assert _snapshot(shards) == before


def test_token_shards_given_an_image_datamodule_and_back(shards: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds images shards, but ShardTokenDataModule reads tokens\. Fix: use "):
        ShardTokenDataModule(str(shards)).vocab_size  # noqa: B018 - the CLI asks for it first
    _marker(shards, kind="tokens")
    with pytest.raises(ConfigError, match=r"--data=datamodules\.streaming\.ShardTokenDataModule"):
        ShardImageDataModule(str(shards)).image_shape  # noqa: B018


@pytest.mark.parametrize("case", ["chunk cut short", "missing"])
def test_fit_on_a_bad_shard_set_exits_1_with_the_paragraph_and_writes_no_run(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    from lightning_gen.__main__ import main

    damage, _, pattern = BAD[case]
    damage(shards)
    before = _snapshot(tmp_path)
    argv = ["fit", "--model=lightning_gen.models.VAE", "--model.init_args.widths=[8]"]
    argv += ["--data=datamodules.streaming.ShardImageDataModule", f"--data.init_args.root={shards}"]
    argv += ["--run.root", str(tmp_path / "runs"), "--run.wandb=disabled", "--trainer.max_steps=1"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 1 and err[-1].startswith("lightning-gen: error: ") and re.search(pattern, err[-1])
    assert _snapshot(tmp_path) == before and not (tmp_path / "runs").exists()
