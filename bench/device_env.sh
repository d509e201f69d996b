# Source on a lent device machine (no network there) before any bench/ script:
#   . bench/device_env.sh
# installs the carried wheels (.whl: brotli, zstandard; not in the device image) under /tmp/site-packages, unpacks
# the carried half of the FlashAttention 4 stack (.fa4/fa4a or .fa4/fa4b from bench/fetch_gpu_stack.sh;
# /tmp/site-packages keeps the other half while the machine stays warm) and says whether FA4 imports, puts them
# and the checkout on PYTHONPATH, and links the carried tokens (.device-data/tokens, built on the CPU
# box with `golf preset h100 --out h100.yaml`, `golf corpus --params h100.yaml --source news` and
# `golf tokenize --params h100.yaml`) to data/tokens.
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 DVC_NO_ANALYTICS=1
# The lent image sets PYTHONDONTWRITEBYTECODE=1 and ships torch without __pycache__, so every
# process compiled torch's modules from source again: `import torch` 5.6 s instead of 2.1 s. Cache
# bytecode under /tmp, as any normal install does in place (the first process writes it).
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pycache
# A folder named site-packages: quack (installed with FA4) keys a compiled epilogue function by qualname
# alone when its code is under a site-packages/ folder, and otherwise recurses into its globals, which fails
# on the CUTLASS DSL's own (quack/gemm_runtime/identity.py `_is_extern_function`; BENCHMARKS.md, seventh session).
mkdir -p /tmp/site-packages
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-packages .whl/*.whl
fi
if [ -f .fa4/fa4a/cu13.tar.xz ] && [ ! -f /tmp/site-packages/.cu13-unpacked ]; then
    tar xJf .fa4/fa4a/cu13.tar.xz -C /tmp/site-packages && touch /tmp/site-packages/.cu13-unpacked
fi
# once per machine: a record still running from the last call has these modules loaded (bench/bench_record.py)
if ls .fa4/fa4b/*.whl >/dev/null 2>&1 && [ ! -f /tmp/site-packages/.fa4b-unpacked ]; then
    for w in .fa4/fa4b/*.whl; do python3 -m zipfile -e "$w" /tmp/site-packages; done   # the image has no unzip
    touch /tmp/site-packages/.fa4b-unpacked
fi
# the CUTLASS DSL's own path first: its meta wheel's .pth is not read outside site-packages
export PYTHONPATH=/tmp/site-packages/nvidia_cutlass_dsl/dsl_packages:/tmp/site-packages:$PWD${PYTHONPATH:+:$PYTHONPATH}
# a fresh machine has neither half: without this line `auto` would train on SDPA unnoticed (BENCHMARKS.md)
python3 -c "import flash_attn.cute" >/dev/null 2>&1 && echo "fa4: ready" || \
    echo "fa4: NOT importable (carry .fa4/fa4a in one call and .fa4/fa4b in the next: bench/fetch_gpu_stack.sh)"
mkdir -p data artifacts
[ -d .device-data/tokens ] && ln -sfn "$PWD/.device-data/tokens" data/tokens
[ -f .device-data/compress/model.golf ] && ln -sfn "$PWD/.device-data/compress" artifacts/compress
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)'; } 2>&1
