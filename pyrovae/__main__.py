"""``python -m pyrovae`` (and ``torchrun -m pyrovae``): the command-line interface."""

from pyrovae.cli import main

if __name__ == "__main__":
    main()
