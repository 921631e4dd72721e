"""`vlalign encoders`, `vlalign datasets`, `vlalign extract`: what can be embedded, and embedding it."""

from __future__ import annotations

import argparse
import json

from vlalign.cli.args import csv_list
from vlalign.cli.output import print_table
from vlalign.datasets.formats import FORMATS, default_format, key_problems
from vlalign.datasets.readers import EMOJI_DOMAINS, EMOJI_LANGS, DatasetSource, check_dataset, check_source
from vlalign.encoders import is_available, list_encoders, preflight


def dataset_source(args: argparse.Namespace) -> DatasetSource:
    """The data set the command line names (--dataset, --format, --annotations, --images, --split, --lang)."""
    fmt = args.format or default_format(args.dataset)
    problems = key_problems(fmt, args.annotations, args.images, args.split, args.lang)
    if problems:  # in the command line's words
        for k in ("annotations", "images", "split", "lang", "langs"):
            problems = [p.replace(f"{k!r}", f"--{k}") for p in problems]
        raise ValueError(f"--format {fmt}: " + "; ".join(problems) + f" (usage: --format {fmt} {FORMATS[fmt].usage})")
    return DatasetSource(name=args.dataset, format=fmt, annotations=args.annotations, images=args.images,
                         lang=args.lang or "en", split=args.split)


def cmd_encoders(args: argparse.Namespace) -> int:
    rows = []
    for spec in list_encoders():
        ok, why = is_available(spec)
        langs = {True: "multilingual", False: "English", None: "-"}[spec.multilingual] if spec.modality == "text" else "-"
        rows.append({"name": spec.name, "modality": spec.modality, "dim": spec.dim, "pooling": spec.pooling,
                     "languages": langs,
                     "offline": "yes" if ok and spec.offline else ("no" if not ok else "hub"), "source": spec.source,
                     **({"note": why} if why else {})})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["name", "modality", "dim", "pooling", "languages", "offline", "source"])
        print("\nHub names also work where there is network: timm/<model>, st/<model>, hf/<repo>.")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    print("emoji   embedded   1906 emoji x domains " + ",".join(EMOJI_DOMAINS) + "; captions in " + ",".join(EMOJI_LANGS))
    print("        labels: label = CLDR category, sublabel = subcategory; see data/README.md")
    print("\nformats (vlalign extract --dataset NAME --format F --images PATH [--annotations FILE]; the same keys in a spec):")
    width = max(len(f) for f in FORMATS)
    for f in FORMATS.values():
        print(f"  {f.name:<{width}}  {f.summary}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    source = dataset_source(args)
    check_source(source)  # the cheap checks: the files exist, the structure is sound
    encoders = csv_list(args.encoders) or []
    preflight(encoders)  # before any Prefect or Dask start-up
    check_dataset(source)  # a one-file index (emoji, coco, karpathy) is read now, and kept for the ingest
    # Prefect and Dask take seconds to import: only now that the input is known to be good
    from vlalign.flows.extract import extract_flow
    from vlalign.flows.runtime import prefect_api, task_runner

    with prefect_api():
        result = extract_flow.with_options(task_runner=task_runner(args.dask_address, args.workers))(
            dataset=source,
            encoders=encoders,
            lake_root=args.lake,
            shard_size=args.shard_size,
            domains=csv_list(args.domains),
            langs=csv_list(args.langs),
            batch_size=args.batch_size,
            device=args.device,
        )
    print(
        f"\nembedded {result['rows_computed']} units in {result['shards_computed']} new shards "
        f"({result['shards_planned']} planned); {result['rejects']} rejects; lake: {result['lake']}"
    )
    return 0
