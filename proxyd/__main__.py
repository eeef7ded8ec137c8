"""``python -m proxyd``: the same as the ``proxyd`` command."""

from __future__ import annotations

from proxyd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
