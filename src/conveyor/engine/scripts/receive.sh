# receive DEPLOY_TO RELEASE SHA256 [SHARED...]: the tarball on stdin becomes releases/RELEASE, complete.
d=$1 rel=$2 sum=$3
shift 3
tmp="$d/incoming/$rel.$$"
trap 'rm -rf -- "$tmp.tar.gz" "$tmp.d"' EXIT
step receive
mkdir -p -- "$d/incoming" "$d/releases" "$d/shared"
cat > "$tmp.tar.gz"
step verify
got=$(sha256sum < "$tmp.tar.gz")
got=${got%% *}
[ "$got" = "$sum" ] || fail 10 "checksum mismatch: expected $sum, received $got"
step unpack
mkdir -p -- "$tmp.d"
tar -xzof "$tmp.tar.gz" -C "$tmp.d" || fail 11 "cannot unpack the release"
step link
for p in "$@"; do
  if [ ! -e "$d/shared/$p" ] && [ ! -L "$d/shared/$p" ]; then
    mkdir -p -- "$(dirname -- "$d/shared/$p")"
    if [ -e "$tmp.d/$p" ]; then cp -Rp -- "$tmp.d/$p" "$d/shared/$p"; else mkdir -p -- "$d/shared/$p"; fi
  fi
  rm -rf -- "$tmp.d/$p"
  mkdir -p -- "$(dirname -- "$tmp.d/$p")"
  ln -s -- "$d/shared/$p" "$tmp.d/$p"
done
step place
if [ -d "$d/releases/$rel" ]; then
  printf 'conveyor: release %s was already complete here\n' "$rel"
else
  mv -- "$tmp.d" "$d/releases/$rel"
fi
