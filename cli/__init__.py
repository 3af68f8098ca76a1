"""The `klm` command-line interface (installed as `klm.cli`).

Every command is a thin wrapper: it parses flags into a library config object
and calls a function in `klm`. Keras is imported only inside the commands,
after `--backend` has been applied, so `klm --help` stays fast.
"""
