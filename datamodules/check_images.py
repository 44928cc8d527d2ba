"""List the image files under a folder that do not decode (corrupt, truncated, not images at all).

    python -m datamodules.check_images ROOT [--extensions .jpg .png ...]

Prints one line per unreadable file and exits with 1 when there is any; every file is fully
decoded, so this reads the whole folder (minutes for 200k images). Training finds such files
only when it reaches them (:mod:`datamodules.image_folder`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from datamodules.image_folder import DECODE_ERRORS, IMAGE_EXTENSIONS


def unreadable_images(files: Iterable[Path]) -> list[tuple[Path, str]]:
    """``(file, reason)`` for each of ``files`` that PIL cannot fully decode."""
    bad = []
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
        except DECODE_ERRORS as err:
            bad.append((path, f"{type(err).__name__}: {err}"))
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.check_images", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--extensions", nargs="+", default=list(IMAGE_EXTENSIONS))
    args = parser.parse_args(argv)
    extensions = tuple(e.lower() for e in args.extensions)
    files = sorted(p for p in args.root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    bad = unreadable_images(files)
    for path, reason in bad:
        print(f"{path}\t{reason}")
    print(f"{len(bad)} of {len(files)} image files under {args.root} do not decode.", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
