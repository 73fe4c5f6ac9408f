#!/bin/sh
# Print the path of a working Python >= 3.12, or explain and exit 1.
# Order: $1 (the Makefile's PYTHON=), python3.13, python3.12, python3.14, python3, python,
# then every pyenv-installed 3.12+ interpreter. A candidate counts only if it really runs
# (pyenv shims exist for versions that are not selected and fail when called).
check() {
    "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1 \
        && "$1" -c 'import sys; print(sys.executable)'
}
if [ -n "$1" ]; then
    check "$1" && exit 0
    echo "PYTHON=$1 is not a working Python >= 3.12 with venv" >&2
    exit 1
fi
for cand in python3.13 python3.12 python3.14 python3 python; do
    command -v "$cand" >/dev/null 2>&1 && check "$cand" && exit 0
done
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for exe in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -r); do
    check "$exe" && exit 0
done
echo "no Python >= 3.12 found: install one, or run 'make PYTHON=/path/to/python3.12 ...'" >&2
exit 1
