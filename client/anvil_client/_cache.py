"""Where bundles rest outside the FORGE: the disk cache and the bootstrap file.

Disk cache: ``<cache_dir>/bundles/<set>.json``, the last good bundle of each set exactly as verified.
Written atomically as the bundle's canonical JSON; verified with
:func:`~anvil_client.bundle.load_stored_bundle` when read (its digest over the exact bytes, else the full
:func:`~anvil_client.bundle.load_bundle`); a file that does not verify is renamed to
``<set>.json.corrupt-<unix time>`` with a log line and never used.

Bootstrap file (``anvil pull --out FILE``; shipped with the application)::

    {"format": "anvil.bootstrap/1", "bundles": [<anvil.bundle/1>, ...]}
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from anvil_client._exceptions import BundleError, BundleFormatError
from anvil_client._state import atomic_write

BOOTSTRAP_FORMAT = "anvil.bootstrap/1"
logger = logging.getLogger("anvil_client")


def bundles_dir(cache_dir: Path) -> Path:
    return cache_dir / "bundles"


def read_disk_bundles(cache_dir: Path) -> list[Any]:
    """Every verified bundle in the disk cache; corrupt files are set aside."""
    from anvil_client.bundle import load_stored_bundle

    directory = bundles_dir(cache_dir)
    try:
        names = sorted(p for p in directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as exc:
        logger.warning("anvil: cannot list the disk cache %s: %s", directory, exc)
        return []
    bundles = []
    for path in names:
        try:
            bundle = load_stored_bundle(path.read_bytes())
            if bundle.set != path.stem:
                raise BundleFormatError(f"file holds set {bundle.set!r}, not {path.stem!r}")
        except BundleError as exc:
            _set_aside(path, exc)
            continue
        except OSError as exc:
            logger.warning("anvil: cannot read cached bundle %s: %s", path, exc)
            continue
        bundles.append(bundle)
    return bundles


def write_disk_bundle(cache_dir: Path, bundle: Any) -> bool:
    """Store ``bundle`` as the last good one of its set. Returns False (and logs) when the disk refuses."""
    from anvil_client.bundle import canonical_json

    directory = bundles_dir(cache_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / f"{bundle.set}.json", canonical_json(dict(bundle.raw)))
    except OSError as exc:
        logger.error(
            "anvil: cannot write set %s version %s to the disk cache %s (%s); serving it from memory",
            bundle.set,
            bundle.version,
            directory,
            exc,
        )
        return False
    return True


def _set_aside(path: Path, error: Exception) -> None:
    target = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        os.replace(path, target)
    except OSError as exc:
        logger.error("anvil: cached bundle %s is corrupt (%s) and cannot be moved aside: %s", path, error, exc)
        return
    logger.error("anvil: cached bundle %s is corrupt (%s); moved aside to %s, not used", path, error, target.name)


def read_bootstrap(path: str | os.PathLike[str]) -> list[Any]:
    """The verified bundles of a bootstrap file. Raises :class:`BundleError` saying what is wrong."""
    from anvil_client.bundle import FORMAT, load_bundle

    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise BundleFormatError(f"cannot read the bootstrap file {path}: {exc}") from exc
    except ValueError as exc:
        raise BundleFormatError(f"bootstrap file {path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("format") == FORMAT:
        items = [data]
    elif isinstance(data, dict) and data.get("format") == BOOTSTRAP_FORMAT and isinstance(data.get("bundles"), list):
        items = data["bundles"]
    else:
        raise BundleFormatError(
            f"bootstrap file {path} is not in the {BOOTSTRAP_FORMAT!r} format "
            '({"format": "anvil.bootstrap/1", "bundles": [...]})'
        )
    bundles = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            bundle = load_bundle(item)
        except BundleError as exc:
            raise type(exc)(f"bootstrap file {path}, bundle {index}: {exc}") from exc
        if bundle.set in seen:
            raise BundleFormatError(f"bootstrap file {path} holds set {bundle.set!r} twice")
        seen.add(bundle.set)
        bundles.append(bundle)
    return bundles


def bootstrap_document(bundles: Iterable[Any]) -> dict[str, Any]:
    """The bootstrap file content for ``bundles`` (verified ``Bundle`` objects or raw bundle dicts)."""
    from anvil_client.bundle import load_bundle

    raws = []
    for item in bundles:
        bundle = item if hasattr(item, "raw") else load_bundle(item)
        raws.append(dict(bundle.raw))
    raws.sort(key=lambda raw: raw["set"])
    return {"format": BOOTSTRAP_FORMAT, "bundles": raws}


def write_bootstrap(path: str | os.PathLike[str], bundles: Iterable[Any]) -> Path:
    """Write a bootstrap file atomically (what ``anvil pull --out FILE`` does)."""
    target = Path(path)
    document = bootstrap_document(bundles)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8") + b"\n")
    return target
