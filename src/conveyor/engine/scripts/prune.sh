# prune DEPLOY_TO KEEP [PROTECTED...]: keep the KEEP newest releases and every protected one; empty incoming/.
d=$1 keep=$2
shift 2
step prune
export LC_ALL=C
rm -rf -- "$d"/incoming/* 2>/dev/null || true
total=0
for r in "$d"/releases/*; do [ -d "$r" ] && total=$((total + 1)); done
excess=$((total - keep))
[ "$excess" -gt 0 ] || exit 0
# The oldest EXCESS releases are the candidates; a protected one among them stays without costing a newer one.
for r in "$d"/releases/*; do
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
