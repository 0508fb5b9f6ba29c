"""What the papers do with the engine: inverting images (`inversion`), windows and channel groups
(`windows`), the per-layer settings (`layer_rules`), activation maximisation and caricatures
(`visualise`), texture and style (`texture`), HOG templates (`hog_templates`), and the error metrics."""
