"""``python -m factory.cli``: the ``persona-factory`` command."""

from factory.cli import main

main()
