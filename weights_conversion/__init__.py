"""From a clone: `python -m weights_conversion.convert` runs `jaxinv.binaries.convert` (installed: jaxinv-convert);
the converters are `jaxinv.conversion`. `fingerprint_asset` is a maintenance script of the shipped network."""
