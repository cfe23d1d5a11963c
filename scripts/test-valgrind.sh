#!/usr/bin/env bash
# The integration commands against redis-server under valgrind memcheck: every server
# the tests start runs under valgrind (through a wrapper given as REDIS_SERVER), and the
# run fails on any invalid access, use of uninitialised memory or definite leak with a
# frame in the module. Debian's redis-server allocates with jemalloc; the soname
# synonym lets memcheck track that heap.
set -euo pipefail
cd "$(dirname "$0")/.."

logs=build/valgrind
rm -rf "$logs" && mkdir -p "$logs"
logs=$(cd "$logs" && pwd)
server=$(command -v "${REDIS_SERVER:-redis-server}")
cat >"$logs/redis-server" <<WRAP
#!/bin/sh
# --version is asked by the tests to learn the server; answer it without valgrind.
[ "\$1" = "--version" ] && exec "$server" --version
exec valgrind --tool=memcheck --soname-synonyms=somalloc=*jemalloc* --leak-check=full \\
  --show-leak-kinds=definite --errors-for-leak-kinds=definite --track-origins=no \\
  --log-file="$logs/memcheck.%p.log" "$server" "\$@"
WRAP
chmod +x "$logs/redis-server"

# The suites whose servers run module commands (the Makefile's list, as SUITES); the
# model test with a shorter stream.
: "${SUITES:?run it as make test-valgrind, which names the suites}"
cargo build --workspace --tests
for scheme in distribution blob; do
  echo "test-valgrind: scheme $scheme"
  LAYERCACHE_SCHEME=$scheme LAYERCACHE_MODEL_COMMANDS=5000 REDIS_SERVER="$logs/redis-server" \
    cargo test -p layercache $SUITES --no-fail-fast -- --test-threads=2
done

# One record per error or leak: the lines from its headline to the next blank line.
python3 - "$logs" <<'PY'
import glob, re, sys
logs = sorted(glob.glob(sys.argv[1] + "/memcheck.*.log"))
errors = module = 0
for path in logs:
    text = open(path, errors="replace").read()
    for record in re.split(r"\n==\d+== \n", text):
        lines = [l for l in record.splitlines() if l.startswith("==")]
        if not lines:
            continue
        head = re.sub(r"^==\d+== ", "", lines[0])
        if not re.match(r"(Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched free|"
                        r"\d[\d,]* bytes in [\d,]+ blocks are definitely lost)", head):
            continue
        errors += 1
        if any("liblayercache" in l or "layercache::" in l or "layercache_core" in l for l in lines):
            module += 1
            print(f"{path}:\n" + "\n".join(lines) + "\n")
print(f"test-valgrind: {len(logs)} servers under memcheck, {errors} errors or definite leaks in all, {module} with a frame in the module")
sys.exit(1 if module or not logs else 0)
PY
