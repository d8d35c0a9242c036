"""`python -m lit_vir`: the same command as `lit-vir`."""

from lit_vir.cli import main

if __name__ == "__main__":
    main()
