"""The lake: where every table lives, how files get there atomically, and how runs share it safely.

Layout (root is a local folder or any fsspec URL such as ``s3://bucket/lake``)::

    items/dataset=<d>/items.parquet                                   canonical items (one row per caption)
    rejects/dataset=<d>/stage=read/part-items.parquet                 items refused on read, with reasons
    rejects/dataset=<d>/stage=extract/encoder=<e>/part=<p>/size=<n>/shard=<k>.parquet  refused while embedding
    embeddings/dataset=<d>/encoder=<e>/part=<p>/size=<n>/shard=<k>.parquet            one file per shard
    pairs/dataset=<d>/domain=<x>/lang=<y>/<digest>.parquet            sql/pairs.sql output, by content
    results/<table>/cell=<id>.parquet                                 one analysis cell, by content
    runs/run=<id>.json                                                one record per run
    lake.duckdb                                                       the views (written by runs, read by queries)
    _locks/                                                           lock files (local lakes)

An object-store lake (any fsspec URL) has the same layout. Its locks, and any other local state (the report's
local copy), live in a local folder keyed by the lake's URL (:meth:`Lake.local_dir`); DuckDB reads it through
the same fsspec filesystem, registered on its connection (see :mod:`vlalign.datalake.catalog`).

Writes. Every local file is written to a temporary name beside its target, fsync'ed and renamed into
place, so a killed run never leaves a half-written file under a name that a rerun trusts; a failed write
removes its temporary. On object stores a single PUT is already atomic, so files are written directly.

Temporaries carry the token of the process that writes them, and each writing process holds a lock
named after its token for as long as it lives. :meth:`Lake.clean_tmp` removes a temporary only when its
writer's lock is free (the writer is dead), so two runs on one lake never delete each other's files in
flight. Locks are ``filelock`` locks (``flock``): the kernel releases them when a process dies, even on
``kill -9``.
"""

from __future__ import annotations

import glob as globlib
import io
import json
import os
import posixpath
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from vlalign.datalake.digest import digest_json
from vlalign.datalake.names import check_name

TMP_MARK = ".tmp-"
LOCK_DIR = "_locks"
RECORD_SLACK = 4096  # bytes of trailing spaces kept in a run record, so that it can be rewritten in place


class LakeError(ValueError):
    """A lake that cannot be used as asked (missing, not a lake, a name that would escape it)."""


_WRITERS: dict[tuple[int, str], tuple[str, FileLock]] = {}
_WRITERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Lake:
    """A lake rooted at ``root`` (a local path or an fsspec URL)."""

    root: str

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Lake":
        root = os.fspath(root)
        if not root or not str(root).strip():
            raise LakeError("lake: expected a folder or an fsspec URL, got an empty string")
        if root.startswith("file://"):
            root = root[len("file://"):]
        if "://" not in root:
            root = os.path.abspath(root)
        return cls(root.rstrip("/") or "/")

    @classmethod
    def existing(cls, root: str | os.PathLike) -> "Lake":
        """The lake at ``root``, which must exist already (readers never create a lake)."""
        lake = cls.open(root)
        if not lake.fs.exists(lake.root):
            raise LakeError(f"no lake at {lake.root}: the folder does not exist (run `vlalign run` or a sweep first)")
        return lake

    # ----------------------------------------------------------------- plumbing
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return lake_filesystem(self.root)

    @property
    def is_local(self) -> bool:
        return "://" not in self.root

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def relpath(self, path: str) -> str:
        """``path`` relative to the root (how run records name files, so a lake can be moved)."""
        prefix = self.root.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise LakeError(f"{path} is not inside the lake {self.root}")
        return path[len(prefix):]

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def _url(self, found: str) -> str:
        """A path as fsspec lists it (``bucket/key`` on object stores) as a URL like the lake's paths."""
        proto = "" if self.is_local else self.root.split("://", 1)[0] + "://"
        return found if found.startswith(proto) else proto + found

    def glob(self, pattern: str) -> list[str]:
        """The files matching ``pattern`` (a path under the root whose last parts may hold wildcards). The root is
        taken literally: a root with glob characters of its own (``runs [1]/lake``) matches itself only."""
        prefix = self.root.rstrip("/") + "/"
        if pattern.startswith(prefix):
            pattern = globlib.escape(prefix) + pattern[len(prefix):]
        return sorted(self._url(p) for p in self.fs.glob(pattern) if TMP_MARK not in p)

    def files(self, under: str = "") -> set[str]:
        """Every file under ``under`` (relative to the root; default the whole lake), as full paths or URLs.
        One recursive listing (on object stores, a few LIST requests rather than one request per file)."""
        base = self.path(under) if under else self.root
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return set()
        return {self._url(p) for p in found if TMP_MARK not in p}

    # ----------------------------------------------------------------- writes
    def write_bytes(self, path: str, data: bytes) -> str:
        """Write ``data`` to ``path`` atomically: nothing, or all of it, is ever under ``path``.

        Local: a temporary beside the target (named with this process's writer token), fsync, rename.
        On any failure (a full disk, a permission error) the temporary is removed and the error raised."""
        if not self.is_local:
            self.fs.pipe_file(path, data)  # a single PUT: atomic on object stores
            return path
        atomic_write_bytes(path, data, self.writer_token())
        return path

    def move(self, src: str, dst: str) -> str:
        """Move the file ``src`` to ``dst`` (both under the root), making ``dst``'s folder; returns ``dst``."""
        if self.is_local:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(src, dst)
        else:
            self.fs.mv(src, dst)
        return dst

    def write_table(self, path: str, table: pa.Table, metadata: dict[str, Any] | None = None) -> str:
        """Write a Parquet file atomically; ``metadata`` goes into the schema as JSON under 'vlalign'."""
        if metadata is not None:
            md = dict(table.schema.metadata or {})
            md[b"vlalign"] = json.dumps(metadata, sort_keys=True).encode()
            table = table.replace_schema_metadata(md)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self.write_bytes(path, buf.getvalue())

    def write_json(self, path: str, obj: Any, slack: int = 0) -> str:
        """Write JSON atomically, followed by ``slack`` spaces (room for :meth:`rewrite_json_in_place`)."""
        return self.write_bytes(path, _json_bytes(obj) + b" " * slack)

    def rewrite_json_in_place(self, path: str, obj: Any) -> None:
        """Overwrite a JSON file without allocating space: the new text, padded with spaces to the old size.

        For the one write that must succeed on a full disk (a run's record saying that it failed). Raises
        ValueError if the new text is longer than the file (the caller shortens it)."""
        data = _json_bytes(obj)
        size = os.path.getsize(path)
        if len(data) > size:
            raise ValueError(f"{len(data)} bytes do not fit in place of {size}")
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, data + b" " * (size - len(data)), 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    # ----------------------------------------------------------------- reads
    def read_json(self, path: str) -> Any:
        with self.fs.open(path, "rb") as f:
            return json.loads(f.read())

    def read_table(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return pq.read_table(f, columns=columns)

    def read_metadata(self, path: str) -> dict[str, Any] | None:
        """The 'vlalign' metadata of a Parquet file, or None if the file is missing or unreadable."""
        try:
            with self.fs.open(path, "rb") as f:
                md = pq.read_schema(f).metadata or {}
        except (FileNotFoundError, OSError, pa.ArrowInvalid):
            return None
        raw = md.get(b"vlalign")
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    # ----------------------------------------------------------------- locks and temporaries
    def local_dir(self, kind: str) -> str:
        """A local folder for this lake's ``kind`` of local state (``locks``, ``reports``), keyed by the lake's
        URL: ``$VLALIGN_CACHE_DIR/<kind>/<digest of the URL>`` (default ``~/.cache/vlalign``). Not created."""
        return os.path.join(cache_home(), kind, digest_json(self.root))

    def stat_key(self, path: str) -> str | None:
        """A signature of the file at ``path`` that any rewrite changes: size, mtime, inode and ctime of a local
        file (ctime cannot be set back by a user); size and ETag or mtime of an object. None: no such file."""
        try:
            if self.is_local:
                st = os.stat(path)
                return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"
            info = self.fs.info(path)
        except (OSError, ValueError):
            return None
        tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        return f"{info.get('size')}:{tag}" if tag is not None else None

    def lock_path(self, name: str) -> str:
        """Where the lock ``name`` lives: ``_locks/`` in a local lake; for an object-store lake, a local
        folder keyed by its URL (``$VLALIGN_LOCK_DIR/<digest>``, default :meth:`local_dir` ``('locks')``):
        runs on one machine coordinate, runs on several machines need a shared local path for it."""
        if self.is_local:
            base = self.path(LOCK_DIR)
        elif os.environ.get("VLALIGN_LOCK_DIR"):
            base = os.path.join(os.environ["VLALIGN_LOCK_DIR"], digest_json(self.root))
        else:
            base = self.local_dir("locks")
        os.makedirs(base, exist_ok=True)
        return os.path.join(base, f"{name}.lock")

    def lock(self, name: str, timeout: float = -1) -> FileLock:
        """An exclusive inter-process lock (``with lake.lock('cell-<id>'):``); released when the holder dies."""
        return FileLock(self.lock_path(name), timeout=timeout, thread_local=False)

    def writer_token(self) -> str:
        """This process's writer token; the first call takes the lock that says the process is alive."""
        key = (os.getpid(), self.root)
        with _WRITERS_LOCK:
            got = _WRITERS.get(key)
            if got is None:
                token = uuid.uuid4().hex[:12]
                lock = FileLock(self.lock_path(f"writer-{token}"), thread_local=False)
                lock.acquire()
                got = _WRITERS[key] = (token, lock)
            return got[0]

    def clean_tmp(self, under: str = "") -> list[str]:
        """Remove temporaries whose writer is dead, under ``under`` (relative to the root).

        A temporary whose writer still holds its lock (another run, in flight) is left alone."""
        if not self.is_local:
            return []  # object stores: no temporaries are written
        base = self.path(under) if under else self.root
        if not os.path.isdir(base):
            return []
        mine = self.writer_token()
        removed = []
        for dirpath, _dirs, files in os.walk(base):
            if LOCK_DIR in Path(dirpath).relative_to(self.root).parts:
                continue
            for name in files:
                if TMP_MARK not in name:
                    continue
                token = name.rsplit(TMP_MARK, 1)[1].split("-", 1)[0]
                if token == mine or self._writer_alive(token):
                    continue
                p = os.path.join(dirpath, name)
                try:
                    os.unlink(p)
                    removed.append(p)
                except FileNotFoundError:
                    pass
        return removed

    def _writer_alive(self, token: str) -> bool:
        path = self.lock_path(f"writer-{token}")
        if not os.path.exists(path):
            return False
        probe = FileLock(path, timeout=0, thread_local=False)
        try:
            probe.acquire()
        except Timeout:
            return True
        probe.release()
        try:
            os.unlink(path)
        except OSError:
            pass
        return False

    # ----------------------------------------------------------------- well-known places
    def items_path(self, dataset: str) -> str:
        return self.path("items", f"dataset={check_name(dataset, 'data set name')}", "items.parquet")

    def read_rejects_path(self, dataset: str) -> str:
        return self.path("rejects", f"dataset={check_name(dataset, 'data set name')}", "stage=read", "part-items.parquet")

    def shard_path(self, dataset: str, encoder: str, part: str, size: int, shard: int, kind: str = "embeddings",
                   layer: int = -1) -> str:
        """An embedding shard's file (or its rejects'). ``layer``: an inner layer's index (a ``layer=<i>`` folder
        below the encoder's); -1, the encoder's output, has none (the paths of the first lakes)."""
        prefix = ("embeddings",) if kind == "embeddings" else ("rejects",)
        stage = () if kind == "embeddings" else ("stage=extract",)
        inner = () if layer == -1 else (f"layer={int(layer)}",)
        return self.path(
            *prefix, f"dataset={check_name(dataset, 'data set name')}", *stage,
            f"encoder={check_name(encoder, 'encoder lake name')}", *inner,
            f"part={check_name(part, 'part (domain or language)')}",
            f"size={int(size)}", f"shard={int(shard):05d}.parquet",
        )

    def pairs_path(self, dataset: str, domain: str, lang: str, digest: str) -> str:
        return self.path("pairs", f"dataset={check_name(dataset, 'data set name')}",
                         f"domain={check_name(domain, 'domain')}", f"lang={check_name(lang, 'language')}",
                         f"{check_name(digest, 'digest')}.parquet")

    def result_path(self, table: str, cell_id: str) -> str:
        return self.path("results", check_name(table, "table"), f"cell={check_name(cell_id, 'cell id')}.parquet")

    def attributions_path(self, run_id: str) -> str:
        return self.path("attributions", f"run={check_name(run_id, 'run id')}.parquet")

    def run_path(self, run_id: str) -> str:
        return self.path("runs", f"run={check_name(run_id, 'run id')}.json")


def cache_home() -> str:
    """This user's vlalign cache folder: ``$VLALIGN_CACHE_DIR``, default ``~/.cache/vlalign``."""
    return os.environ.get("VLALIGN_CACHE_DIR") or os.path.join(Path.home(), ".cache", "vlalign")


def lake_filesystem(url: str) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem of a lake path or URL, as every part of vlalign (and DuckDB) uses it.

    Storage options come the fsspec way: ``FSSPEC_<PROTOCOL>_<OPTION>`` environment variables or fsspec's
    config files (``FSSPEC_S3_ENDPOINT_URL``), and the store's own variables (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``: botocore reads them). Object stores list without a
    listings cache: other processes (Dask workers, a concurrent run) change the lake, and a stale listing
    would call a deleted shard done."""
    if "://" not in url or url.startswith("file://"):
        return fsspec.core.url_to_fs(url)[0]
    try:
        return fsspec.core.url_to_fs(url, use_listings_cache=False)[0]
    except TypeError:  # a filesystem that does not take the option
        return fsspec.core.url_to_fs(url)[0]


def atomic_write_bytes(path: str, data: bytes, tag: str) -> None:
    """The one atomic writer of a local file: a temporary ``<path>.tmp-<tag>-<random>`` beside the target,
    fsync, rename over ``path``. On any failure (a full disk, a permission error) the temporary is removed
    and the error raised: nothing, or all of ``data``, is ever under ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}{TMP_MARK}{tag}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno and not e.filename:  # a full disk: say which file could not be written
            raise type(e)(e.errno, e.strerror, path) from e
        raise


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=str).encode()
