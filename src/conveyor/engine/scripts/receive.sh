# receive DEPLOY_TO RELEASE SHA256 [SHARED...]: the tarball on stdin becomes releases/RELEASE, complete.
# One pass: the bytes are hashed while they are unpacked (no spooled copy to write and read again), and
# the release is moved into releases/ only once its checksum matched and it unpacked whole.
d=$1 rel=$2 sum=$3
shift 3
tmp="$d/incoming/$rel.$$"
trap 'rm -rf -- "$tmp.d" "$tmp.fifo" "$tmp.sum"' EXIT
step receive
mkdir -p -- "$d/incoming" "$d/releases" "$d/shared" "$tmp.d"
mkfifo -- "$tmp.fifo"
sha256sum < "$tmp.fifo" > "$tmp.sum" &
hasher=$!
# tar may stop reading at the end of the archive: drain the rest so the checksum covers every byte.
status=0
tee -- "$tmp.fifo" | { tar -xzof - -C "$tmp.d" || exit 11; cat > /dev/null; } || status=$?
wait "$hasher" || true
step verify
got=$(cat -- "$tmp.sum")
got=${got%% *}
[ "$got" = "$sum" ] || fail 10 "checksum mismatch: expected $sum, received $got"
step unpack
[ "$status" -eq 0 ] || fail 11 "cannot unpack the release"
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
