# Shared by every Conveyor host script. POSIX sh; needs tar, gzip, sha256sum, mkdir, ln, mv, rm, tee.
set -eu
exec 2>&1
step() { printf '@@conveyor step=%s\n' "$1"; }
fail() { code=$1; shift; printf 'conveyor: %s\n' "$*"; exit "$code"; }
# prune_releases DEPLOY_TO KEEP [PROTECTED...]: keep the KEEP newest releases and every protected one, and
# empty incoming/. Release ids sort in the order they were built.
prune_releases() {
  pd=$1 keep=$2
  shift 2
  rm -rf -- "$pd"/incoming/* 2>/dev/null || true
  total=0
  for r in "$pd"/releases/*; do [ -d "$r" ] && total=$((total + 1)); done
  excess=$((total - keep))
  [ "$excess" -gt 0 ] || return 0
  # The oldest EXCESS releases are the candidates; a protected one among them stays without costing a newer one.
  for r in "$pd"/releases/*; do
    [ "$excess" -gt 0 ] || break
    [ -d "$r" ] || continue
    excess=$((excess - 1))
    name=${r##*/}
    skip=no
    for p in "$@"; do [ "$name" = "$p" ] && skip=yes; done
    if [ "$skip" = no ]; then
      rm -rf -- "$r"
      printf '@@conveyor pruned=%s\n' "$name"
    fi
  done
}
