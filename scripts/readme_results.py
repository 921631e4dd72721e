"""Rewrite README.md's results block from a lake that holds the default run (`make run` first).

    python scripts/readme_results.py [--lake lake] [--run RUN_ID] [--check]

--check: exit 1 (and say why) if the README's block differs from what the lake gives, without writing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlalign.datalake.store import Lake
from vlalign.engine.world import check_spec
from vlalign.report.readme import replace_block, results_block

README = Path(__file__).resolve().parent.parent / "README.md"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default="lake")
    ap.add_argument("--run", default=None, help="default: the default spec's run id")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    run_id = args.run or check_spec(None).spec.default_run_id
    text = README.read_text()
    new = replace_block(text, results_block(Lake.existing(args.lake), run_id))
    if args.check:
        if new != text:
            print(f"README.md's results block differs from run {run_id} in {args.lake}: "
                  "python scripts/readme_results.py rewrites it", file=sys.stderr)
            return 1
        print("README.md's results block is the lake's")
        return 0
    README.write_text(new)
    print(f"README.md's results block: run {run_id} from {args.lake}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
