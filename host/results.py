"""Saving a command's figures as JSON, with a one-line error instead of a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["provenance", "save_json"]


def provenance(args) -> dict:
    """``command``, ``date`` and ``machine`` of a ``symspike`` run, ``args`` its parsed
    command line (``main`` keeps the words in ``args.argv``; without them, ``sys.argv``)."""
    import time

    from .experiment import machine
    argv = getattr(args, "argv", None)
    argv = sys.argv[1:] if argv is None else argv
    return {"command": " ".join(["symspike", *map(str, argv)]),
            "date": time.strftime("%Y-%m-%d"), "machine": machine()}


def save_json(path, data, prog: str, label: str = "saved") -> bool:
    """Write ``data`` to ``path`` as indented JSON, making its folder.

    Prints ``"<label> <path>"`` on success, or ``"<prog>: cannot write <path>: <why>"`` on
    stderr, and returns whether it worked.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        print(f"{prog}: cannot write {path}: {exc}", file=sys.stderr)
        return False
    print(f"{label} {path}")
    return True
