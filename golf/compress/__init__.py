"""The artifact: codecs, byte shuffle, per-group layouts, our versioned container, the code bundle."""
