"""Corpus sources, the challenge shard format, the SentencePiece tokenizer and byte accounting (BPB)."""
