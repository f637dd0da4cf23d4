#!/usr/bin/env bash
# Runs the test suite on Node 24 without Docker: the Docker image uses node:24-slim, but no Docker
# engine runs here. Downloads Debian sid's nodejs 24 and its libraries into .haproxy/node24 (next to
# the private HAProxy install, same private apt state) and runs it through its own loader.
#
# Debian's node loads some built-ins (undici, acorn…) from /usr/share/nodejs, so the run happens in a
# private mount namespace where that path is bind-mounted from the download: needs root (unshare -m).
#
# better-sqlite3's native addon is built per Node.js ABI: the one in node_modules is for the host's
# Node 20 and does not load in 24. A second one is compiled once against Debian's Node 24 headers
# (libnode-dev) and kept in .haproxy/node24; inside the namespace it is bind-mounted over the Node 20
# one. Nothing in node_modules changes, so a Node 20 run at the same time, or after this one is
# killed, still finds its own addon.
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
# Node 24's headers, for the addon (kept apart from the check above: older downloads lack them).
if [ ! -f "$DEST/root/usr/include/node/node.h" ]; then
  mkdir -p "$DEST/debs"
  (cd "$DEST/debs" && apt-get "${O[@]}" -qq download libnode-dev >&2)
  dpkg -x "$DEST"/debs/libnode-dev_*.deb "$DEST/root"
fi
LIB="$DEST/root/usr/lib/x86_64-linux-gnu"
NODE=("$LIB/ld-linux-x86-64.so.2" --library-path "$LIB" "$DEST/root/usr/bin/node")
echo "node $("${NODE[@]}" --version)" >&2
# Tests that start another Node process (hapctl itself, scripts) use this command line.
HAPCTL_TEST_NODE="$(node -e 'process.stdout.write(JSON.stringify(process.argv.slice(1)))' "${NODE[@]}")"
export HAPCTL_TEST_NODE

# The host's own addon first: it is the file the Node 24 one is mounted over.
node "$ROOT/scripts/ensure-native.mjs"
PKG="$ROOT/node_modules/better-sqlite3"
LIVE="$PKG/build/Release/better_sqlite3.node"
# From the headers: Node 24 itself cannot run a script outside the namespace set up below.
ABI="$(sed -n 's/^#define NODE_MODULE_VERSION \([0-9][0-9]*\).*/\1/p' "$DEST/root/usr/include/node/node_version.h")"
ADDON="$DEST/better-sqlite3-$(node -p "require('$PKG/package.json').version")-abi$ABI.node"
if [ ! -f "$ADDON" ]; then
  echo "building better-sqlite3's addon for Node 24 (ABI $ABI) against $DEST/root/usr/include/node (about a minute)" >&2
  WORK="$DEST/build-better-sqlite3"
  rm -rf "$WORK" && mkdir -p "$WORK"
  cp -r "$PKG/binding.gyp" "$PKG/package.json" "$PKG/src" "$PKG/deps" "$WORK/"
  # npm's own node-gyp, run by the host's node; what it builds for is set by --nodedir's headers.
  GYP="${npm_config_node_gyp:-$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js}"
  (cd "$WORK" && node "$GYP" rebuild --release --nodedir="$DEST/root/usr" >"$WORK.log" 2>&1) ||
    { tail -n 40 "$WORK.log" >&2; echo "the Node 24 build of better-sqlite3 failed; full log: $WORK.log" >&2; exit 1; }
  cp "$WORK/build/Release/better_sqlite3.node" "$ADDON.tmp" && mv "$ADDON.tmp" "$ADDON"
  rm -rf "$WORK" "$WORK.log"
fi
# Threads, not child processes: a forked worker would re-exec the loader, not node.
made=0
[ -d /usr/share/nodejs ] || made=1
status=0
unshare -m sh -c 'mkdir -p /usr/share/nodejs && mount --bind "$1/root/usr/share/nodejs" /usr/share/nodejs &&
  mount --bind "$2" "$3" && shift 3 && exec "$@"' \
  _ "$DEST" "$ADDON" "$LIVE" "${NODE[@]}" "$ROOT/node_modules/vitest/vitest.mjs" run --pool=threads "$@" || status=$?
# The mount went with the namespace; the empty mount point it needed did not.
if [ "$made" = 1 ]; then rmdir /usr/share/nodejs 2>/dev/null || true; fi
exit "$status"
