"""`python3 -m archcalc ...`: the same CLI, without relying on the script directory being on PATH."""

from archcalc.cli.main import program

program()
