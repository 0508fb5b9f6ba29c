"""Files and data: images, datasets and their selection rules, outputs written atomically, reports,
the cache root and the command-line entry point."""
