#!/bin/sh
# Install a sterimesh node on a Debian PC, from this source tree (run as root):
#   sudo deploy/install.sh
# then, as the sterimesh user, make the node (first of a cluster, or joining one):
#   sudo -u sterimesh /opt/sterimesh/bin/sterimesh init --data /var/lib/sterimesh \
#       --name "Poste lavage" --zone sale --new-cluster
#   (or: ... join --data /var/lib/sterimesh --name ... --zone ... --token ... --peer HOST:8701)
#   sudo systemctl enable --now sterimesh
# PREFIX, DATA and UNITS may be set to install elsewhere (a rehearsal, a test).
set -eu

SOURCE=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/sterimesh}
DATA=${DATA:-/var/lib/sterimesh}
UNITS=${UNITS:-/etc/systemd/system}
PYTHON=${PYTHON:-python3}
NODE_USER=${NODE_USER:-sterimesh}

say() { printf '%s\n' "$*"; }

if [ "$(id -u)" -eq 0 ] && ! id "$NODE_USER" >/dev/null 2>&1; then
    say "creating the system user $NODE_USER"
    useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin "$NODE_USER"
    usermod -a -G dialout "$NODE_USER" 2>/dev/null || true
fi

say "installing sterimesh into $PREFIX"
"$PYTHON" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --upgrade pip
"$PREFIX/bin/python" -m pip install --quiet "$SOURCE"
# the fold compiled with mypyc (a faster start and sync); without gcc it runs interpreted
if "$PREFIX/bin/python" -m pip install --quiet mypy setuptools &&
    "$PREFIX/bin/python" -c "from crdt_model._compiled import main; main()"; then
    say "the fold is compiled"
else
    say "the fold could not be compiled (gcc and python3-dev?): it runs interpreted, same results"
fi

say "data folder $DATA (only $NODE_USER reads it)"
mkdir -p "$DATA"
chmod 0700 "$DATA"
if id "$NODE_USER" >/dev/null 2>&1; then
    chown "$NODE_USER:$NODE_USER" "$DATA"
fi

mkdir -p "$UNITS"
sed -e "s#/opt/sterimesh#$PREFIX#g" -e "s#/var/lib/sterimesh#$DATA#g" \
    -e "s#^User=sterimesh#User=$NODE_USER#" -e "s#^Group=sterimesh#Group=$NODE_USER#" \
    "$SOURCE/deploy/sterimesh.service" > "$UNITS/sterimesh.service"
say "unit written to $UNITS/sterimesh.service"
if [ "$UNITS" = /etc/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
fi
say "done: make the node (init or join, see the top of this script), then"
say "  systemctl enable --now sterimesh"
