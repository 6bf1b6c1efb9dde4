from .run import cli

cli()
