"""Files between stages: atomic writes, safetensors with versioned JSON headers, metrics."""
