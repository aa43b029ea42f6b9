"""The trainer's command groups, each a typer app that trainer/cli.py registers: argument parsing only,
the work is in the library modules, imported inside each command so that `trainer --help` starts without
loading torch."""
