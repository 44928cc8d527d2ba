"""A corpus file that is not text, given to `lightning-gen fit`: one paragraph naming it and the fix; nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tests.helpers.cli import run_main
from tests.helpers.paths import EXPERIMENTS


def test_fit_on_a_folder_with_a_binary_file_refuses_and_writes_nothing(tmp_path: Path, one_thread) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("ROMEO:\nBut, soft! what light through yonder window breaks?\n\n" * 200)
    binary = folder / "b.txt"
    binary.write_bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    runs = tmp_path / "runs"
    result = run_main(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "gpt_shakespeare_char.yaml"),
            "--config",
            str(EXPERIMENTS / "debug.yaml"),
            f"--data.init_args.text_path={folder}",
            "--run.root",
            str(runs),
        ],
        tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (paragraph,) = [line for line in result.stderr.splitlines() if line.startswith("lightning-gen: error:")]
    assert re.search(
        rf"`data.init_args.text_path`: {re.escape(str(binary))} is not UTF-8 text \(can't decode byte 0x[0-9a-f]{{2}}: "
        r".* at byte offset \d+\)\. Fix: convert it to UTF-8 \(e\.g\. `iconv -t UTF-8`\) or remove it from the folder\.$",
        paragraph,
    ), paragraph
    assert not runs.exists() or not any(runs.rglob("*"))
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt"]  # no id cache beside the data
