"""Real image-text pairs for vision alignment (issue 16): the npm package `emoji-datasource-google`.

1,911 emoji, each with a name, short names, a category and a subcategory (data MIT) and a 64x64 PNG
drawn by Google (Noto Emoji, Apache-2.0) under `img/google/64/`. The package is fetched once with
`npm pack` into the cache folder (about 74 MB) and read from there; none of it is committed.

The held-out split is by a hash of the image name, so it does not depend on the order of the
records or on the package version's other entries.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
IMAGES = "package/img/google/64/"


class EmojiMissing(RuntimeError):
    """The emoji package could not be fetched (npm missing or the registry unreachable)."""


@dataclass(frozen=True, slots=True)
class Emoji:
    image: str  # "1f600.png": the record's id here
    name: str
    short_names: tuple[str, ...]
    category: str
    subcategory: str
    png: bytes

    @property
    def text(self) -> str:
        """What a user would type for it: name, short names, where it sits in the keyboard."""
        names = ", ".join(n.replace("_", " ") for n in self.short_names if n.replace("_", " ") != self.name.lower())
        return (
            f"{self.name.lower()}"
            + (f" ({names})" if names else "")
            + f"; {self.category.lower()}, {self.subcategory.replace('-', ' ')}"
        )

    @property
    def held_out(self) -> bool:
        """One in five emoji, fixed by a hash of the image name: never trained on."""
        return hashlib.sha256(self.image.encode()).digest()[0] % 5 == 0


def fetch(cache_dir: Path, progress: Callable[[str], None] = lambda line: None) -> Path:
    """The package tarball in `cache_dir`, fetched with `npm pack` on first use.

    Raises:
        EmojiMissing: npm is not installed or failed.
    """
    target = cache_dir / "data" / f"{PACKAGE}-{VERSION}.tgz"
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise EmojiMissing("npm is needed once to fetch the emoji images (apt-get install npm, or Node.js)")
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"fetching {PACKAGE}@{VERSION} from the npm registry into {target.parent} (once, ~74 MB) ...")
    result = subprocess.run(
        [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(target.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not target.exists():
        raise EmojiMissing(f"npm pack {PACKAGE}@{VERSION} failed:\n{(result.stdout + result.stderr)[-2000:]}")
    return target


def _member(archive: tarfile.TarFile, member: str | tarfile.TarInfo) -> IO[bytes]:
    """A regular file of the package archive.

    Raises:
        EmojiMissing: it is not a regular file (a corrupt or unexpected package).
    """
    handle = archive.extractfile(member)
    if handle is None:
        raise EmojiMissing(f"{member} in the emoji package is not a regular file")
    return handle


def load_emoji(cache_dir: Path, progress: Callable[[str], None] = lambda line: None) -> list[Emoji]:
    """Every emoji with a Google image, in the package's order."""
    with tarfile.open(fetch(cache_dir, progress)) as archive:
        records = json.load(_member(archive, "package/emoji.json"))
        members = {m.name: m for m in archive.getmembers() if m.name.startswith(IMAGES)}
        out = []
        for record in records:
            member = members.get(IMAGES + record["image"])
            if not record.get("has_img_google") or member is None or not record.get("name"):
                continue
            png = _member(archive, member).read()
            out.append(
                Emoji(
                    record["image"],
                    record["name"],
                    tuple(record.get("short_names", ())),
                    record["category"],
                    record["subcategory"],
                    png,
                )
            )
    return out
