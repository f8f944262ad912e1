# Sourced by start.sh and test.sh: make the project's virtualenv (.venv) if it is missing
# and install ShardKV into it, with the extras given as arguments ("test" for the tests).
# Nothing is installed into the system Python; the venv sees only what pyproject.toml
# declares (no --system-site-packages), so an undeclared import fails here first.
# Afterwards .venv/bin is first on PATH, so `python` and `shardkv` are the venv's.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_python="${SHARDKV_PYTHON:-python3.11}"
command -v "$_python" >/dev/null || _python=python3
if [ ! -x "$_root/.venv/bin/python" ]; then
  "$_python" -m venv "$_root/.venv"
  "$_root/.venv/bin/python" -m pip install -q --upgrade pip
fi
_spec="$_root"
if [ "$#" -gt 0 ]; then _spec="$_root[$(IFS=,; echo "$*")]"; fi
"$_root/.venv/bin/python" -m pip install -q -e "$_spec"
export PATH="$_root/.venv/bin:$PATH"
export VIRTUAL_ENV="$_root/.venv"
unset _root _python _spec
