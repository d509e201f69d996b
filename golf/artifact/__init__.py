"""The decode side: everything the bundled train_gpt.py carries, and nothing else.

The artifact container reader, the dequantizer, the model, the token shards reader, byte accounting,
the sliding-window scorer and the runtime helpers. The encode side (GPTQ, Hessians, the container
writer, params.yaml, atomic writers) lives outside, so the code bytes that count against the cap
hold only what scoring needs (tests/test_container.py checks the bundle stays inside this package).
"""
