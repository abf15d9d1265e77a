# receive_delta DEPLOY_TO RELEASE BASE SHA256 COMPRESSION NSHARED [SHARED...] [DELETED...]: build releases/RELEASE from
# releases/BASE (hard links) and the delta tarball on stdin, complete before it is placed.
d=$1 rel=$2 base=$3 sum=$4 z=$5 nshared=$6
shift 6
tmp="$d/incoming/$rel.$$"
trap 'rm -rf -- "$tmp.d" "$tmp.fifo" "$tmp.sum"' EXIT
step receive
[ -d "$d/releases/$base" ] || fail 12 "base release $base is not on this host"
mkdir -p -- "$d/incoming" "$d/releases" "$d/shared"
# Hard links to the base: the files stay shared until the delta replaces one (tar unlinks before writing).
cp -al -- "$d/releases/$base" "$tmp.d" || fail 13 "cannot link the base release (needs cp -al)"
i=0
for p in "$@"; do
  i=$((i + 1))
  [ "$i" -le "$nshared" ] && continue
  rm -rf -- "$tmp.d/$p"
done
unpack_verified "$tmp" "$sum" delta "$z"
step link
i=0
for p in "$@"; do
  i=$((i + 1))
  [ "$i" -gt "$nshared" ] && break
  rm -rf -- "$tmp.d/$p"
  mkdir -p -- "$(dirname -- "$tmp.d/$p")"
  ln -s -- "$d/shared/$p" "$tmp.d/$p"
done
place_release "$d" "$rel" "$tmp"
