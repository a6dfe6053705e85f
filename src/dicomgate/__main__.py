"""``python -m dicomgate``: the same command line as the ``dicomgate`` script."""

from dicomgate.entry import main

main()
