# Shared by every Conveyor host script. POSIX sh; needs tar, gzip, sha256sum, mkdir, ln, mv, rm.
set -eu
exec 2>&1
step() { printf '@@conveyor step=%s\n' "$1"; }
fail() { code=$1; shift; printf 'conveyor: %s\n' "$*"; exit "$code"; }
