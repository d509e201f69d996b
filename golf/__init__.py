"""golf: the Parameter Golf workbench library. No argv, no params.yaml paths, no CUDA at import."""
