"""``python -m smithers``: the command-line interface."""

from smithers.cli import main

if __name__ == "__main__":
    main()
