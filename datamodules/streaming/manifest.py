"""Our marker beside LitData's files, and the checks that refuse a shard set before a run uses it.

A shard set is a folder (or an ``s3://`` prefix) with one LitData dataset per split (``train/``,
``val/``, ``test/``, each with ``index.json`` and ``chunk-*.bin``) and :data:`MANIFEST_NAME`, which
says what the shards hold (images or tokens, shapes, classes, the tokenizer), which source they
were written from, and the version of this format. ``lightning-gen prepare`` writes the marker
first with ``complete: false`` and rewrites it with ``complete: true`` when every split is in
place, so an interrupted ``prepare`` is recognisable.

:func:`check_shards` turns each way a set can be unusable into one paragraph (a missing set, a set
without our marker or of another format version, a half-written one, a missing or cut-short
chunk): LitData itself would wait forever for the missing bytes of a truncated chunk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from datamodules.streaming.store import ShardStore
from gen_common.errors import ConfigError, CorruptDataError, DataNotFoundError

MANIFEST_NAME = "lightning_gen_shards.json"
FORMAT = "lightning_gen.shards"
#: bump when the layout or the meaning of a field changes; readers refuse other versions
FORMAT_VERSION = 1
Kind = Literal["images", "tokens"]


@dataclass
class ShardManifest:
    """What :data:`MANIFEST_NAME` holds.

    Args:
        kind: ``images`` (items ``{"image": uint8 (C, H, W), "label", "index"}``) or ``tokens`` (token ids).
        source: Class path of the datamodule the shards were written from, and its ``init_args``.
        dataset_id: The source datamodule's ``dataset_id``.
        splits: Items per split (images) or tokens per split (tokens); ``test`` may be absent.
        image_shape: ``(C, H, W)`` of the images.
        num_classes: Classes of labelled images; ``None``: unlabelled.
        class_names: Names of the classes (image folders: the class folder names), if any.
        tokenizer: The tokenizer's ``to_dict()`` (token shards).
        complete: ``False`` while ``prepare`` writes; ``True`` once every split is in place.
    """

    kind: Kind
    source: dict[str, Any]
    dataset_id: str
    splits: dict[str, int] = field(default_factory=dict)
    image_shape: list[int] | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    tokenizer: dict[str, Any] | None = None
    complete: bool = False
    litdata_version: str = ""
    format: str = FORMAT
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardManifest:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def _prepare_hint(url: str) -> str:
    return (
        f"write it with `lightning-gen prepare --config <experiment>.yaml --out {url}` (docs/data.md lists the sources)"
    )


def read_manifest(store: ShardStore) -> ShardManifest:
    """The marker of a usable shard set, or one paragraph saying why there is none (no chunk is checked)."""
    data = store.read_json(MANIFEST_NAME)
    if data is None:
        files = store.sizes()
        if files is None:
            raise DataNotFoundError(
                f"The shard set {store.url} does not exist (no such folder, or nothing under that S3 prefix). "
                f"Fix: {_prepare_hint(store.url)}, or point `--data.init_args.root` at the shard set. Nothing was written."
            )
        litdata = sorted(name for name in files if name.endswith("index.json"))
        what = f"LitData datasets ({', '.join(litdata[:3])})" if litdata else f"{len(files)} other file(s)"
        raise CorruptDataError(
            f"{store.url} holds {what} but no {MANIFEST_NAME}: it was not written by `lightning-gen prepare` "
            f"(another tool, or a lightning_gen from before shard format {FORMAT_VERSION}). Fix: {_prepare_hint(store.url)} "
            "into a new folder. Nothing was written."
        )
    if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
        raise CorruptDataError(
            f"{store.url} was written in shard format {data.get('format')!r} version {data.get('version')!r}; this "
            f"lightning_gen reads {FORMAT!r} version {FORMAT_VERSION}. Fix: rewrite it with this version's "
            f"`lightning-gen prepare` (into a new folder), or train with the lightning_gen version that wrote it. "
            "Nothing was written."
        )
    manifest = ShardManifest.from_dict(data)
    if not manifest.complete:
        raise CorruptDataError(
            f"{store.url} is a half-written shard set: its `lightning-gen prepare` stopped before the end "
            f"({MANIFEST_NAME} says complete: false). Fix: delete it and run the same `lightning-gen prepare` again. "
            "Nothing was written."
        )
    return manifest


def expect_kind(manifest: ShardManifest, kind: Kind, store: ShardStore, datamodule: str) -> None:
    """One paragraph when token shards are given to the image datamodule, or the other way round."""
    if manifest.kind != kind:
        other = "ShardTokenDataModule" if manifest.kind == "tokens" else "ShardImageDataModule"
        raise ConfigError(
            f"{store.url} holds {manifest.kind} shards, but {datamodule} reads {kind}. Fix: use "
            f"`--data=datamodules.streaming.{other}` for it, or point `--data.init_args.root` at {kind} shards."
        )


def check_chunks(store: ShardStore, splits: list[str]) -> None:
    """Refuse (one paragraph) a split whose ``index.json`` or any chunk file is missing or not its indexed size."""
    files = store.sizes() or {}
    problems: list[str] = []
    for split in splits:
        index = store.child(split).read_json("index.json")
        if index is None:
            problems.append(f"{split}/index.json is missing")
            continue
        for chunk in index.get("chunks", []):
            name, expected = f"{split}/{chunk['filename']}", chunk.get("chunk_bytes")
            actual = files.get(name)
            if actual is None:
                problems.append(f"{name} is missing")
            elif expected is not None and actual != expected:
                problems.append(f"{name} has {actual} bytes, index.json says {expected}")
    if problems:
        listed = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise CorruptDataError(
            f"The shard set {store.url} is truncated: {listed}. A copy or upload stopped early, or files were deleted. "
            f"Fix: copy the set again from where it was written, or {_prepare_hint(store.url)} into a new folder. "
            "Nothing was written."
        )


def check_shards(store: ShardStore, kind: Kind, datamodule: str) -> ShardManifest:
    """The manifest of a complete, untruncated shard set of ``kind``; else one paragraph (see module doc)."""
    manifest = read_manifest(store)
    expect_kind(manifest, kind, store, datamodule)
    check_chunks(store, sorted(manifest.splits))
    return manifest


class ShardSet:
    """A datamodule's shard set: where it is, what it holds (the marker, read once) and whether it is whole.

    Args:
        store: Its location.
        kind: What the datamodule reads (``images`` or ``tokens``).
        owner: The datamodule's class name, for the paragraphs.
    """

    def __init__(self, store: ShardStore, kind: Kind, owner: str) -> None:
        self.store, self.kind, self.owner = store, kind, owner
        self._manifest: ShardManifest | None = None
        self._checked = False

    @property
    def manifest(self) -> ShardManifest:
        """The marker (what the CLI asks before anything runs: shapes, classes, tokenizer); chunks unchecked."""
        if self._manifest is None:
            manifest = read_manifest(self.store)
            expect_kind(manifest, self.kind, self.store, self.owner)
            self._manifest = manifest
        return self._manifest

    def check(self) -> ShardManifest:
        """The marker of a complete, untruncated set (checked once), else one paragraph."""
        if not self._checked:
            self._manifest = check_shards(self.store, self.kind, self.owner)
            self._checked = True
        return self.manifest
