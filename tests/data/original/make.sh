#!/usr/bin/env bash
# Regenerate the runs directory the original batchrun (0.0.14, from PyPI) writes, for tests/test_matrix.py.
# It is data, recorded once: the original is never a dependency. Run it with the original's executable:
#   python3 -m venv /tmp/orig && /tmp/orig/bin/pip install 'batchrun==0.0.14'
#   bash tests/data/original/make.sh /tmp/orig/bin/batchrun
set -euo pipefail
original=${1:?usage: make.sh PATH/TO/batchrun-0.0.14}
cd "$(dirname "$0")"
rm -rf rundir grid.runfile
"$original" sweep grid.yml
# Its own runs directory (--accounting_dir, so the repository's runs/ ignore rule leaves it alone).
"$original" launch grid.runfile -j 1 --accounting_dir rundir > /dev/null
ls rundir/logs | wc -l
