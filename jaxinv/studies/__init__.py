"""The papers' studies: the shallow table (`shallow`), the deep-network studies (`deep_networks`) and the
learned inverters' feature studies (`inverter_features`, `perturbations`)."""
