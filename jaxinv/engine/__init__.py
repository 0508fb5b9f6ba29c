"""The pre-image engine: the one `Representation` type, layer graphs (`graph`, `layer_shapes`), the
solver (IJCV Algorithm 1) and the objective assembly and optimisation (`preimage`)."""
