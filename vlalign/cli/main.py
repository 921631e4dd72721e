"""The `vlalign` command: the user's door to the flows and the lake.

    vlalign encoders                      list the encoder catalog
    vlalign datasets                      list the embedded data set and the data set formats
    vlalign extract --dataset emoji --encoders mobilenetv2,minilm-l6
    vlalign run [--spec sweep.yaml]       the main job (the sweep on the embedded default unless a spec is given)
    vlalign sweep SPEC.yaml               a sweep from a spec
    vlalign resume RUN_ID                 finish a run that failed or was killed
    vlalign spec [SPEC.yaml] [--schema]   check a sweep spec (run id if valid), or print its JSON schema
    vlalign query "SQL" [--format table|csv|json] [--timeout S] [--memory-limit SIZE]
    vlalign report [RUN_ID] [--out DIR]   a summary, plots and report.html of a run
    vlalign verify [RUN_ID ...] [--repair]  check every file the runs list; recompute the damaged ones
    vlalign server status|stop            the background Prefect API server kept for later commands
    vlalign explain --item google/en/1f431 [--run RUN_ID] [--top N] --vision mobilenetv2 --text minilm-l6 --out DIR

The arguments of every command are in vlalign.cli.parser; each command's handler lives in its group's module
(vlalign.cli.data, .sweep, .lake, .explain), imported when the command runs, after the environment's defaults
are set (Prefect reads them when it is first imported).
"""

from __future__ import annotations

import importlib
import os
import sys

from vlalign.cli.parser import build_parser
from vlalign.flows.runtime import configure_environment


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["VLALIGN_VERBOSE"] = "1"
    configure_environment()
    module, _, name = args.handler.partition(":")
    try:
        return getattr(importlib.import_module(module), name)(args) or 0
    except BrokenPipeError:
        # the reader went away (`vlalign query ... | head`): stop quietly, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, FileNotFoundError) as e:
        # bad input: a clear message, no traceback (VLALIGN_DEBUG=1 shows it)
        if os.environ.get("VLALIGN_DEBUG"):
            raise
        print(f"vlalign {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as e:
        # the machine or a run failed (a full disk, a failed cell): one line naming the file, what is kept and how
        # to go on; VLALIGN_DEBUG=1 shows the traceback
        if os.environ.get("VLALIGN_DEBUG"):
            raise
        print(f"vlalign {args.cmd}: failed: {_one_line(e)} (VLALIGN_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    """An error in one line, with the file an OSError names (``[Errno 28] No space left on device: 'path'``)."""
    if isinstance(e, OSError) and e.strerror:
        where = " ".join(f"'{f}'" for f in (e.filename, e.filename2) if f)
        return f"{e.strerror}" + (f": {where}" if where else "") + (f" [errno {e.errno}]" if e.errno else "")
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
