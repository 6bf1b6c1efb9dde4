"""``python -m pyro_ebnn.run COMMAND``: the command line (:mod:`pyro_ebnn.cli`)."""
from .cli import cli

if __name__ == "__main__":
    cli()
