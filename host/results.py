"""Saving a command's figures as JSON, with a one-line error instead of a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["provenance", "save_json"]


def provenance(command: str) -> dict:
    """``command``, ``date`` and ``machine`` of a ``symspike <command> …`` run (``command``:
    its sub-command words, such as ``"bench throughput"`` or ``"build"``)."""
    import time

    from .experiment import machine
    words = command.split()
    return {"command": " ".join(["symspike", *words, *sys.argv[1 + len(words):]]),
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
