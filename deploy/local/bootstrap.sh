#!/usr/bin/env bash
# Makes the project's virtualenv (once per pyproject.toml + constraints.txt) and prints its path.
#
# The venv lives in ${SAIL_VENV_CACHE:-~/.cache/sail-stream}/venv-<hash>, so fresh clones and CI
# reuse it instead of downloading torch again; the editable install is pointed at this checkout on
# every call. Java 17+ and Maven (for the local Kafka broker) are installed with apt-get when missing
# and we are root. Progress goes to stderr; stdout is only the venv path.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
say() { printf 'bootstrap: %s\n' "$*" >&2; }

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11+ is required (set PYTHON=/path/to/python3.11); found: $("$python" --version 2>&1)"
  exit 1
fi

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # the status page is tested in a real headless browser
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)  # promtool checks and unit-tests the alert rules
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # test certificates for the TLS tests
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_apt[*]} with apt-get"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
  else
    say "missing ${need_apt[*]}: install Java 17+ and Maven (local Kafka broker), Chromium and promtool (tests)"
  fi
fi

cache=${SAIL_VENV_CACHE:-$HOME/.cache/sail-stream}
key=$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-12)
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ]; then
  say "creating $venv (first run downloads torch and friends: several minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  if ! "$venv/bin/pip" install -c "$root/constraints.txt" -e "$root[dev,milvus-server,movielens]" >"$cache/install.log" 2>&1; then
    tail -40 "$cache/install.log" >&2
    say "dependency install failed; full log in $cache/install.log"
    exit 1
  fi
  touch "$venv/.complete"
  say "virtualenv ready"
fi
# Point the editable install at this checkout (another clone may have used the same venv).
log="$cache/last-editable-install.log"
if ! "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$root" >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
echo "$venv"
