"""`python -m satsr ...` (also what `torchrun -m satsr train ...` runs)."""

from satsr.cli.app import main

if __name__ == "__main__":
    main()
