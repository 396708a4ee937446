"""The released SqueezeTime checkpoints by name, downloaded once into a local cache.

    squeezetime_jax.load("k400")
    python -m squeezetime_jax.convert from-release k400 OUT_DIR
    python train.py ... --config.init_from=release:in1k

Names: in1k (ImageNet-1k pretraining, the released training's initialization), k400,
k600 and hmdb51 (classifiers). The AVA 2.1 checkpoint is a detector whose heads this
classifier does not have; it is listed, and asking for it says so.

Files go to $SQUEEZETIME_CACHE, else $XDG_CACHE_HOME/squeezetime_jax/checkpoints, else
~/.cache/squeezetime_jax/checkpoints. $SQUEEZETIME_RELEASE_URL replaces the base URL
(a mirror, or a local server). With $SQUEEZETIME_OFFLINE=1 nothing is downloaded: the
cache must hold the file. A download is written to a temporary file with a progress bar,
checked (size and SHA-256) and renamed into place, so the cache never holds part of one.

Digests: the project does not know the published files' SHA-256 digests yet. The first
download's digest is recorded next to the file (`<file>.sha256`, sha256sum format) and
every later use, or a new download of the same file, is checked against it; a digest
added to `RELEASES` is checked from the first download on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import socket
import sys
import urllib.error
import urllib.request
import uuid
from typing import Callable

from squeezetime_jax.checkpoints.errors import CheckpointError
from squeezetime_jax.checkpoints.metadata import Metadata, shipped_class_names

BASE_URL = "https://github.com/xinghaochen/SqueezeTime/releases/download/ckpts/"
PREFIX = "release:"
ENV_CACHE = "SQUEEZETIME_CACHE"
ENV_BASE_URL = "SQUEEZETIME_RELEASE_URL"
ENV_OFFLINE = "SQUEEZETIME_OFFLINE"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


class DownloadError(CheckpointError):
    """A released checkpoint could not be fetched: no network, HTTP error, short file."""


class ChecksumError(DownloadError):
    """A released checkpoint's SHA-256 differs from the published or recorded one."""


def _kinetics_protocols(test_short_side=224, test_crop=224, test_clips=10, val=256):
    return {
        "val": {"num_clips": 1, "num_crops": 1, "short_side": val, "crop_size": 224},
        "test": {
            "num_clips": test_clips,
            "num_crops": 3,
            "short_side": test_short_side,
            "crop_size": test_crop,
        },
    }


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    filename: str
    description: str
    num_classes: int | None = None  # of the classifier head, None for pretraining
    sha256: str | None = None  # published digest, when the project knows it
    frame_interval: int | None = None
    protocols: dict | None = None
    dataset: str | None = None

    def metadata(self) -> Metadata:
        """Class names and clip settings of the released recipe (the release's configs;
        the frame count is the network's own)."""
        if self.num_classes is None:
            return Metadata()
        return Metadata(
            class_names=shipped_class_names(self.num_classes),
            frame_interval=self.frame_interval,
            protocols={k: dict(v) for k, v in (self.protocols or {}).items()},
            dataset=self.dataset,
        )


RELEASES = {
    r.name: r
    for r in (
        Release(
            "in1k",
            "SqueezeTime_in1k_pretrain.pth",
            "ImageNet-1k pretraining, the initialization of the released training",
        ),
        Release(
            "k400",
            "SqueezeTime_K400_71.64.pth",
            "Kinetics-400 classifier, 71.64% top-1",
            num_classes=400,
            frame_interval=4,
            protocols=_kinetics_protocols(),
            dataset="kinetics400",
        ),
        Release(
            "k600",
            "SqueezeTime_K600_76.06.pth",
            "Kinetics-600 classifier, 76.06% top-1",
            num_classes=600,
            frame_interval=4,
            protocols=_kinetics_protocols(),
            dataset="kinetics600",
        ),
        Release(
            "hmdb51",
            "SqueezeTime_HMDB51_65.56.pth",
            "HMDB51 (split 1) classifier fine-tuned from K400, 65.56% top-1",
            num_classes=51,
            frame_interval=4,
            protocols={
                "val": {
                    "num_clips": 1,
                    "num_crops": 1,
                    "short_side": 224,
                    "crop_size": 224,
                },
                "test": {
                    "num_clips": 2,
                    "num_crops": 3,
                    "short_side": 286,
                    "crop_size": 286,
                },
            },
            dataset="hmdb51_split1",
        ),
    )
}
UNSUPPORTED = {
    "ava": (
        "SqueezeTime-AVA2.1.pth is the AVA 2.1 spatio-temporal detector; its "
        "detection heads are not part of this classifier, so it is not supported"
    ),
}


def names() -> list[str]:
    return list(RELEASES)


def get(name: str) -> Release:
    """The release called `name` (`release:` prefix allowed); a clear error otherwise."""
    key = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    key = key.strip().lower()
    if key in RELEASES:
        return RELEASES[key]
    for unsupported, reason in UNSUPPORTED.items():
        if key.startswith(unsupported):
            raise CheckpointError(f"released checkpoint {name!r}: {reason}")
    raise CheckpointError(
        f"no released checkpoint called {name!r}; the releases are "
        + ", ".join(f"{r.name} ({r.description})" for r in RELEASES.values())
    )


def is_reference(text: str | os.PathLike) -> bool:
    """True for `release:NAME`, and for a bare release name that is not a local path."""
    text = os.fspath(text)
    if text.startswith(PREFIX):
        return True
    return text.strip().lower() in RELEASES and not os.path.exists(text)


def cache_dir() -> str:
    override = os.environ.get(ENV_CACHE)
    if override:
        return os.path.abspath(os.path.expanduser(override))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.abspath(
        os.path.join(os.path.expanduser(base), "squeezetime_jax", "checkpoints")
    )


def url(release: Release) -> str:
    base = os.environ.get(ENV_BASE_URL) or BASE_URL
    return base.rstrip("/") + "/" + release.filename


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fetch(
    name: str,
    *,
    log: Callable[[str], None] = _stderr,
    progress: bool | None = None,
    release: Release | None = None,
) -> str:
    """The local path of a released checkpoint, downloading it on first use.

    `progress`: None shows the bar on a terminal only. `release` replaces the
    registry entry (a mirror's own file, or tests).
    """
    release = release or get(name)
    target = os.path.join(cache_dir(), release.filename)
    digest_file = target + ".sha256"
    recorded = _read_digest(digest_file)
    expected = release.sha256 or recorded
    where = (
        "published digest"
        if release.sha256
        else f"digest recorded at its first download in {digest_file}"
    )
    if os.path.isfile(target):
        actual = sha256_file(target)
        if expected is None:
            _write_digest(digest_file, actual, release.filename)
            log(
                f"{target}: no SHA-256 of {release.filename} is known to squeezetime_jax "
                f"yet; recorded {actual} in {digest_file}"
            )
        elif actual != expected:
            raise ChecksumError(
                f"{target}: SHA-256 {actual} does not match the {where} ({expected}); "
                "the file is damaged or was replaced. Delete it to download it again."
            )
        return target
    if os.environ.get(ENV_OFFLINE, "").strip() not in ("", "0"):
        raise DownloadError(
            f"released checkpoint {release.name}: {target} is not in the cache and "
            f"{ENV_OFFLINE} is set; download it where there is a network, or put "
            f"{release.filename} there yourself"
        )
    source = url(release)
    log(f"downloading {release.name} ({release.description}) from {source} to {target}")
    actual = _download(source, target, expected, where, progress)
    if expected is None:
        _write_digest(digest_file, actual, release.filename)
        log(
            f"no SHA-256 of {release.filename} is known to squeezetime_jax yet; "
            f"recorded this download's digest {actual} in {digest_file}, and later "
            "uses are checked against it"
        )
    return target


def resolve(text: str | os.PathLike, **kwargs) -> str:
    """`release:NAME` (or a bare release name) -> the cached file; anything else as is."""
    text = os.fspath(text)
    return fetch(text, **kwargs) if is_reference(text) else text


def load(name: str, **kwargs):
    """A released checkpoint as a `Conversion`, with the class names and clip settings
    of the released recipe where the file carries none."""
    from squeezetime_jax.interop.torch_checkpoints import load_torch_checkpoint

    release = get(name)
    path = fetch(name, **kwargs)
    try:
        conversion = load_torch_checkpoint(path)
    except CheckpointError as error:
        hint = (
            " (it is ImageNet pretraining, meant for --config.init_from=release:in1k)"
            if release.num_classes is None
            else ""
        )
        raise CheckpointError(
            f"released checkpoint {release.name}: {error}{hint}"
        ) from None
    conversion.metadata = conversion.metadata.merged(release.metadata()).checked(
        conversion.config, path
    )
    conversion.notes.append(f"released checkpoint {release.name}: {url(release)}")
    return conversion


# ---------------------------------------------------------------- files


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_digest(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().split()
    except FileNotFoundError:
        return None
    if not text or len(text[0]) != 64:
        raise CheckpointError(f"{path}: not a SHA-256 digest file; delete it")
    return text[0].lower()


def _write_digest(path: str, digest: str, filename: str) -> None:
    from squeezetime_jax import files

    files.write_text(path, f"{digest}  {filename}\n")


def _download(
    source: str, target: str, expected: str | None, where: str, progress: bool | None
) -> str:
    """Streams `source` to a temporary file next to `target`, checks it, renames it."""
    from tqdm import tqdm

    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = os.path.join(
        os.path.dirname(target), f".{os.path.basename(target)}.{uuid.uuid4().hex}.part"
    )
    request = urllib.request.Request(
        source, headers={"User-Agent": "squeezetime_jax (checkpoint download)"}
    )
    try:
        try:
            response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
        except urllib.error.HTTPError as error:
            raise DownloadError(
                f"{source}: HTTP {error.code} {error.reason}; the file was not downloaded"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(
                f"cannot reach {source} ({reason}). No network? Checkpoints downloaded "
                f"before are used from {cache_dir()} without one; or put the file there "
                f"yourself, or set {ENV_BASE_URL} to a mirror"
            ) from None
        with response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            digest = hashlib.sha256()
            received = 0
            with (
                open(partial, "wb") as f,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=os.path.basename(target),
                    disable=None if progress is None else not progress,
                ) as bar,
            ):
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (http.client.IncompleteRead, socket.timeout, OSError) as error:
                        raise DownloadError(
                            f"{source}: the download broke off after {received} of "
                            f"{total if total is not None else '?'} bytes "
                            f"({type(error).__name__}); try again"
                        ) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DownloadError(
                f"{source}: truncated download, {received} of {total} bytes "
                "(Content-Length); nothing was kept, try again"
            )
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise ChecksumError(
                f"{source}: SHA-256 {actual} of the download does not match the {where} "
                f"({expected}); nothing was kept"
            )
        os.replace(partial, target)
        return actual
    finally:
        if os.path.exists(partial):
            os.remove(partial)
