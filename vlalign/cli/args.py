"""Argument types and argument groups shared by the `vlalign` commands' parsers: each type checks one value and
says what it expected."""

from __future__ import annotations

import argparse
import os

from vlalign.datalake.names import check_name
from vlalign.datasets.formats import FORMAT_NAMES

__all__ = ["add_cluster_args", "add_dataset_args", "add_lake_arg", "checked_name", "csv_list", "nonempty",
           "positive_float", "positive_int"]


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def checked_name(what: str):
    """A type for a name that becomes part of a lake path (a run id, a data set): vlalign.datalake.names.check_name."""

    def check(s: str) -> str:
        try:
            return check_name(s, what)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return check


def nonempty(s: str) -> str:
    if not s.strip():
        raise argparse.ArgumentTypeError("expected a non-empty value")
    return s


def csv_list(s: str | None) -> list[str] | None:
    """'a, b,,c' -> ['a', 'b', 'c']; empty or None -> None."""
    if not s:
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


def add_lake_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--lake", type=nonempty, default=os.environ.get("VLALIGN_LAKE", "lake"),
                   help=help or "lake root: a folder or fsspec URL (default ./lake, or $VLALIGN_LAKE)")


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """--lake, and where and how a flow's tasks run."""
    add_lake_arg(p)
    p.add_argument("--dask-address", default=os.environ.get("VLALIGN_DASK_ADDRESS"),
                   help="scheduler address of an existing Dask cluster (default: a LocalCluster)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="LocalCluster worker processes (default: min(2, cores))")
    p.add_argument("--device", default=None, help="torch device for encoders (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="encoder batch size (default: 8 on CPU, 64 on CUDA)")


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    """A data set named on the command line: its name, format and files (the keys of a spec's data set entry)."""
    p.add_argument("--dataset", type=checked_name("--dataset"), default="emoji",
                   help="data set name ('emoji' is embedded; others need --format F --images PATH ...)")
    p.add_argument("--format", default=None, choices=FORMAT_NAMES,
                   help="data set format, see `vlalign datasets` (default: emoji for 'emoji', else coco)")
    p.add_argument("--annotations", default=None,
                   help="coco, karpathy: the JSON file; xtd: the caption files' folder or pattern; "
                        "imagefolder: class names (optional)")
    p.add_argument("--images", default=None,
                   help="the image folder; webdataset: tar shards ('data-{000..009}.tar', a folder, one .tar); "
                        "img2dataset, hf-imagefolder: the data set's folder")
    p.add_argument("--split", default=None,
                   help="karpathy: train|val|test|restval (comma-separated for several); hf-imagefolder: a split "
                        "folder (default: all)")
    p.add_argument("--lang", default=None, help="the captions' language, for formats with one language (default: en)")
    p.add_argument("--domains", default=None, help="comma-separated domains to embed (default: all)")
    p.add_argument("--langs", default=None, help="comma-separated caption languages to embed (default: all)")
