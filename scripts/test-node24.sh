#!/usr/bin/env bash
# Runs the test suite on Node 24 without Docker: the Docker image uses node:24-slim, but no Docker
# engine runs here. Downloads Debian sid's nodejs 24 and its libraries into .haproxy/node24 (next to
# the private HAProxy install, same private apt state) and runs it through its own loader.
#
# Debian's node loads some built-ins (undici, acorn…) from /usr/share/nodejs, so the run happens in a
# private mount namespace where that path is bind-mounted from the download: needs root (unshare -m).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/install-haproxy.sh" >/dev/null   # fills the private apt lists
APT="$ROOT/.haproxy/apt"
DEST="$ROOT/.haproxy/node24"
O=("-oDir::Etc::SourceList=$APT/sources.list" "-oDir::Etc::SourceParts=$APT/none" "-oDir::State::Lists=$APT/lists"
   "-oDir::State::status=$APT/status" "-oDir::Cache=$APT/cache" "-oDebug::NoLocking=1" "-oAPT::Default-Release=sid")

if [ ! -x "$DEST/root/usr/bin/node" ]; then
  mkdir -p "$DEST/debs" "$DEST/root"
  pkgs=$(apt-cache "${O[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances --no-pre-depends nodejs | grep -v '^ ' | grep -v '<' | sort -u)
  (cd "$DEST/debs" && apt-get "${O[@]}" -qq download $pkgs >&2)
  for deb in "$DEST"/debs/*.deb; do dpkg -x "$deb" "$DEST/root"; done
fi
LIB="$DEST/root/usr/lib/x86_64-linux-gnu"
NODE=("$LIB/ld-linux-x86-64.so.2" --library-path "$LIB" "$DEST/root/usr/bin/node")
echo "node $("${NODE[@]}" --version)" >&2
# Threads, not child processes: a forked worker would re-exec the loader, not node.
made=0
[ -d /usr/share/nodejs ] || made=1
status=0
unshare -m sh -c 'mkdir -p /usr/share/nodejs && mount --bind "$0/root/usr/share/nodejs" /usr/share/nodejs && shift && exec "$@"' \
  "$DEST" _ "${NODE[@]}" "$ROOT/node_modules/vitest/vitest.mjs" run --pool=threads "$@" || status=$?
# The mount went with the namespace; the empty mount point it needed did not.
if [ "$made" = 1 ]; then rmdir /usr/share/nodejs 2>/dev/null || true; fi
exit "$status"
