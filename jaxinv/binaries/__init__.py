"""The command-line programs, each flags -> one library call -> files: `jaxinv.binaries.NAME` is installed as
the console script `jaxinv-NAME` (underscores as hyphens; its `run()`), and from a clone runs as
`python -m experiments.NAME` (`python -m weights_conversion.convert` for `convert`)."""
