# Source on a lent device machine (no network there) before any bench/ script:
#   . bench/device_env.sh
# installs the carried wheels (.whl: brotli, zstandard; not in the device image) under /tmp/site,
# puts them and the checkout on PYTHONPATH, and links the carried tokens (.device-data/tokens,
# built on the CPU box with `golf preset h100 --out h100.yaml && golf tokenize --params h100.yaml`) to data/tokens.
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 DVC_NO_ANALYTICS=1
# The lent image sets PYTHONDONTWRITEBYTECODE=1 and ships torch without __pycache__, so every
# process compiled torch's modules from source again: `import torch` 5.6 s instead of 2.1 s. Cache
# bytecode under /tmp, as any normal install does in place (the first process writes it).
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pycache
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi   # what was on PYTHONPATH stays after: e.g. the FlashAttention 4 stack (pyproject's gpu extra, unpacked)
mkdir -p data artifacts
[ -d .device-data/tokens ] && ln -sfn "$PWD/.device-data/tokens" data/tokens
[ -f .device-data/compress/model.golf ] && ln -sfn "$PWD/.device-data/compress" artifacts/compress
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)'; } 2>&1
