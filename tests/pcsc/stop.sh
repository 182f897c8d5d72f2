#!/bin/sh
# Usage: tests/pcsc/stop.sh DIR
# Stops the virtual card (vicc) and the private pcscd started by start.sh DIR.
# Idempotent; removes nothing but the pid files (logs stay in DIR).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
"$(dirname "$0")/card.sh" "$DIR" stop

# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
stop_pid "$DIR/pcscd.pid"
