"""What a model costs on a named device: the device catalogue (one YAML file per device,
every number with its source) and the per-layer roofline over an analysis."""
