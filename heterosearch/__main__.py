"""``python -m heterosearch``: the same as the ``heterosearch`` command."""

from heterosearch.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
