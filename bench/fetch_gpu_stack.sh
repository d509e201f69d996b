#!/usr/bin/env bash
# On a machine that reaches PyPI: the wheels of pyproject's `gpu` extra (FlashAttention 4 and the CUTLASS
# DSL it runs on) for a GPU machine with Python 3.12 and no network, in two folders that each fit one
# 64 MiB device call:
#   DEST/fa4a/cu13.tar.xz   the CUDA-13 CUTLASS DSL library (a 92 MB wheel, unpacked and xz'd: ~61 MiB)
#   DEST/fa4b/*.whl         the other wheels (~10 MB)
# On the device, `. bench/device_env.sh` unpacks whichever the call carried into /tmp/site-packages (send fa4a with
# one call and fa4b with the next while the machine is warm) and says whether FA4 imports.
#   bash bench/fetch_gpu_stack.sh .fa4                  # the versions pyproject.toml pins
#   CUTLASS=4.7.1 bash bench/fetch_gpu_stack.sh .fa4    # another CUTLASS DSL version
set -euo pipefail
dest=${1:?usage: [CUTLASS=VERSION] fetch_gpu_stack.sh DEST}
root=$(cd "$(dirname "$0")/.." && pwd)
# the gpu extra's pins, without extras markers: "flash-attn-4==4.0.0b36", ...
mapfile -t pins < <(python3 - "$root/pyproject.toml" <<'EOF'
import re, sys, tomllib
for req in tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["gpu"]:
    print(re.sub(r"\[.*?\]", "", req))
EOF
)
cutlass=${CUTLASS:-$(printf '%s\n' "${pins[@]}" | sed -n 's/^nvidia-cutlass-dsl==//p')}
[ -n "$cutlass" ] || { echo "fetch_gpu_stack: no nvidia-cutlass-dsl pin in pyproject's gpu extra" >&2; exit 2; }
# built beside DEST and moved in at the end: a failed download leaves DEST as it was
work=$(mktemp -d "${dest%/}.partial.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fa4a" "$work/fa4b" "$work/tmp/x"
get() {  # wheels only, for the device's CPython 3.12 on x86_64, no dependencies (torch is on the device)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$1" "$2"
}
for pin in "${pins[@]}"; do
    case $pin in nvidia-cutlass-dsl==*) pin="nvidia-cutlass-dsl==$cutlass" ;; esac
    get "$work/fa4b" "$pin"
done
# the DSL's parts that its [cu13] extra names; without libs-core, flash_attn.cute fails on cutlass.cute
get "$work/fa4b" "nvidia-cutlass-dsl-libs-base==$cutlass"
get "$work/fa4b" "nvidia-cutlass-dsl-libs-core==$cutlass"
get "$work/tmp" "nvidia-cutlass-dsl-libs-cu13==$cutlass"
python3 -m zipfile -e "$work"/tmp/nvidia_cutlass_dsl_libs_cu13-*.whl "$work/tmp/x"
tar cf - -C "$work/tmp/x" . | xz -9 -T0 > "$work/fa4a/cu13.tar.xz"
mkdir -p "$dest"
rm -rf "$dest/fa4a" "$dest/fa4b"
mv "$work/fa4a" "$work/fa4b" "$dest/"
echo "CUTLASS DSL $cutlass"
du -sh "$dest/fa4a" "$dest/fa4b"
