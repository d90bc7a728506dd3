"""``python -m engine.app.cli``: the ``emarl`` command line."""

from engine.app.cli import main

if __name__ == "__main__":
    main()
