"""Find, verify and parse the USPS handwritten digit files.

The files come from the folder named by ``USPS_DATA_DIR`` (for offline machines), else the per-user cache
(``$USPS_CACHE_DIR/data``, by default ``~/.cache/usps-cnn-book/data``), else a download from the dataset's
public home into the cache. Every file is checked against the SHA-256 values published with this project
before it is moved into the cache or parsed, and every row is validated while it is parsed.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

Split = Literal["train", "test"]
Scale = Literal["unit", "symmetric"]

FILES: dict[str, str] = {"train": "zip.train.gz", "test": "zip.test.gz"}
SHA256: dict[str, str] = {
    "zip.train.gz": "66ebf231ab51f2cf6ac1a892d0f98ccffee1079d7a5db638c1f11f366046ca16",
    "zip.test.gz": "8dacc3c6e136af6c3488de9e5113a7daf140c8c2f1f0b61c54ee02f03f1a962f",
}
ROWS: dict[str, int] = {"train": 7291, "test": 2007}
MIRRORS: tuple[str, ...] = (
    "https://hastie.su.domains/ElemStatLearn/datasets/",
    "https://web.stanford.edu/~hastie/ElemStatLearn/datasets/",
)
N_PIXELS = 256
ENV_DATA_DIR = "USPS_DATA_DIR"
ENV_CACHE_DIR = "USPS_CACHE_DIR"


class USPSDataError(RuntimeError):
    """The USPS data could not be found, downloaded, verified or parsed."""


@dataclass(frozen=True)
class Source:
    """Where a data file was found and its verified checksum."""

    path: Path
    sha256: str
    origin: Literal["USPS_DATA_DIR", "cache", "download"]


def cache_root() -> Path:
    """The project's per-user cache folder (``USPS_CACHE_DIR`` or ``~/.cache/usps-cnn-book``)."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "usps-cnn-book"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, name: str) -> str:
    """Check ``path`` against the published SHA-256 of ``name``; return the digest."""
    if (actual := sha256_of(path)) != (expected := SHA256[name]):
        raise USPSDataError(
            f"{path}: SHA-256 mismatch for {name}.\n"
            f"  expected {expected}\n  actual   {actual}\n"
            f"The file is truncated, altered or not the USPS data. Delete it and let the "
            f"project download it again, or replace it with a fresh copy from {MIRRORS[0]}{name}."
        )
    return actual


def _report(done: int, total: int | None) -> None:
    if total:
        print(f"\r  {done / 1e6:5.2f} / {total / 1e6:.2f} MB ({100 * done / total:3.0f} %)",
              end="", file=sys.stderr, flush=True)


def download(name: str, target: Path, mirrors: Sequence[str] = MIRRORS,
             progress: Callable[[int, int | None], None] | None = _report,
             timeout: float = 60.0) -> Path:
    """Download ``name`` from the first mirror that serves it into ``target``. The bytes go to a temporary file
    in the target folder, are checked against the published SHA-256, and only then renamed to ``target``: an
    interrupted or wrong download leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for base in mirrors:
        url = base + name
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            print(f"Downloading {url}", file=sys.stderr)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length else None
                done = 0
                try:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
                except http.client.IncompleteRead as exc:
                    done += len(exc.partial)
                if total is not None and done != total:
                    raise USPSDataError(f"the connection dropped after {done} of {total} bytes")
            if progress:
                print(file=sys.stderr)
            verify(tmp, name)
            os.replace(tmp, target)
            return target
        except (OSError, http.client.HTTPException, urllib.error.URLError, USPSDataError) as exc:
            failures.append(f"  {url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise USPSDataError(
        f"Could not download {name}; nothing was written to {target.parent}.\n"
        + "\n".join(failures)
        + f"\nOn a machine without internet access, put zip.train.gz and zip.test.gz in a "
        f"folder and set {ENV_DATA_DIR} to that folder."
    )


def locate(split: Split) -> Source:
    """Find the verified file of ``split``, downloading it into the cache if needed."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, not {split!r}")
    name = FILES[split]
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        path = Path(env).expanduser() / name
        if not path.is_file():
            raise USPSDataError(
                f"{ENV_DATA_DIR}={env} but {path} does not exist. Put {name} there "
                f"(from {MIRRORS[0]}{name}) or unset {ENV_DATA_DIR} to use the cache and download."
            )
        return Source(path, verify(path, name), "USPS_DATA_DIR")
    cached = cache_root() / "data" / name
    if cached.is_file():
        return Source(cached, verify(cached, name), "cache")
    download(name, cached)
    return Source(cached, verify(cached, name), "download")


def parse(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse a USPS ``.gz`` file into float32 pixels (N, 256) and int64 labels, validating every row: a label
    (``6.0000`` or ``6``) then 256 values in [-1, 1], separated by white space (trailing spaces allowed)."""
    try:
        with gzip.open(path, "rt", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise USPSDataError(
            f"{path}: not a complete gzip file of text ({exc}). The file is truncated or "
            f"damaged: delete it and download it again."
        ) from exc
    labels: list[int] = []
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {number}"
        if len(fields) != N_PIXELS + 1:
            raise USPSDataError(f"{where}: expected 257 values (a label and 256 pixels), "
                                f"found {len(fields)}. The file is damaged: replace it.")
        try:
            values = [float(field) for field in fields]
        except ValueError as exc:
            raise USPSDataError(f"{where}: a value is not a number ({exc}). "
                                f"The file is damaged: replace it.") from exc
        if not all(np.isfinite(values)):
            raise USPSDataError(f"{where}: NaN or infinite value. The file is damaged: replace it.")
        label = values[0]
        if label != int(label) or not 0 <= label <= 9:
            raise USPSDataError(f"{where}: label {fields[0]} is not a digit 0-9. "
                                f"The file is damaged: replace it.")
        pixels = values[1:]
        if min(pixels) < -1.0 or max(pixels) > 1.0:
            raise USPSDataError(f"{where}: pixel values must lie in [-1, 1], found "
                                f"{min(pixels)}..{max(pixels)}. The file is damaged: replace it.")
        labels.append(int(label))
        rows.append(pixels)
    if not rows:
        raise USPSDataError(f"{path}: no rows. The file is empty or damaged: replace it.")
    return np.asarray(rows, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def to_images(pixels: np.ndarray, scale: Scale = "unit") -> np.ndarray:
    """Reshape (N, 256) pixels to (N, 16, 16, 1) images. ``scale="unit"`` maps the files' [-1, 1] to the
    paper's convention, 0 = white background and 1 = black ink; ``scale="symmetric"`` keeps [-1, 1]."""
    if scale == "unit":
        pixels = (pixels + 1.0) / 2.0
    elif scale != "symmetric":
        raise ValueError(f"scale must be 'unit' or 'symmetric', not {scale!r}")
    return pixels.reshape(-1, 16, 16, 1).astype(np.float32)


_MEMO: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def load_usps(split: Split, *, scale: Scale = "unit") -> tuple[np.ndarray, np.ndarray]:
    """The verified ``split``: float32 images (N, 16, 16, 1) scaled by :func:`to_images`, int64 labels; parsed once."""
    source = locate(split)
    memo_key = (str(source.path), source.sha256)
    if memo_key not in _MEMO:
        pixels, labels = parse(source.path)
        if len(labels) != ROWS[split]:
            raise USPSDataError(f"{source.path}: expected {ROWS[split]} rows, found {len(labels)}.")
        _MEMO[memo_key] = (pixels, labels)
    pixels, labels = _MEMO[memo_key]
    return to_images(pixels, scale), labels.copy()


def checksums() -> dict[str, str]:
    """The verified SHA-256 of both files, as found by :func:`locate`."""
    return {FILES[split]: locate(split).sha256 for split in ("train", "test")}


def validation_split(labels: np.ndarray, fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified indices ``(fit, holdout)`` that carve a validation set out of training data."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    fit, holdout = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(fit), np.sort(holdout)


def fold_split(labels: np.ndarray, folds: int, fold: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified k-fold: indices ``(fit, held out)`` of fold ``fold`` of ``folds``; each image is held out once."""
    from sklearn.model_selection import StratifiedKFold

    if not 0 <= fold < folds:
        raise ValueError(f"fold must lie in 0..{folds - 1}, not {fold}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fit, held = list(splitter.split(np.zeros(len(labels)), labels))[fold]
    return np.sort(fit), np.sort(held)


#: The pixel-noise levels (standard deviations, images in [0, 1]) the book reads digits under.
NOISE_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)


def add_noise(images: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    """``images`` in [0, 1] with Gaussian noise of standard deviation ``level``, clipped back to [0, 1]. The draw
    depends only on ``seed`` and the images' shape: every model reads the same noisy copies."""
    noise = np.random.default_rng(seed).standard_normal(images.shape).astype(np.float32)
    return np.clip(images + level * noise, 0.0, 1.0)
