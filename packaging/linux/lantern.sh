#!/bin/sh
# /usr/bin/lantern: starts the bundle installed under /opt/lantern (found relative to this script, so
# an install unpacked into another root, as `make package-test` does, runs its own copy).
here=$(dirname "$(readlink -f "$0")")
exec "$here/../../opt/lantern/Lantern" "$@"
