#!/usr/bin/env bash
# Installs LightOn's lightonml 1.4.3 (the OPU's Python API, with its simulated
# device) into the active Python environment, the way that works on current
# Python and numpy 2:
#   - lightonml 1.4.3 pins numexpr==2.7.*, which has no wheel (and does not
#     build) for current Python, so lightonml goes in with --no-deps;
#   - its real runtime dependencies go in first: numexpr (any current
#     version), attrs, requests, numpy, and setuptools < 81 for the
#     pkg_resources it imports. They are also dfax's `opu` extra
#     (pip install -e ".[opu]"); keep the two lists equal.
# lightonml's SeparatedBitPlanEncoder uses np.float (removed in numpy 1.24);
# dfax's backend never uses it (it sends binary frames, lightonml's NoEncoding).
#
#   bash scripts/install_lightonml.sh
#   python -m pytest tests/opu/test_lightonml_backend.py -q
set -euo pipefail
python -m pip install "numexpr>=2.8" "attrs>=19" "requests>=2" "setuptools<81"
python -m pip install --no-deps "lightonml==1.4.3"
python -c "import lightonml; lightonml.OPU(n_components=4, max_n_features=4, simulated=True); \
print('lightonml', lightonml.__version__, ': simulated OPU ok')"
