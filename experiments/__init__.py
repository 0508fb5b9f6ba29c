"""From a clone: `python -m experiments.NAME` runs the binary `jaxinv.binaries.NAME`, installed as the console
script `jaxinv-NAME`. Each module here is only that forwarding; nothing of this package is installed."""
