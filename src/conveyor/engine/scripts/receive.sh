# receive DEPLOY_TO RELEASE SHA256 COMPRESSION [SHARED...]: the tarball on stdin becomes releases/RELEASE,
# complete.
# One pass: the bytes are hashed while they are unpacked (no spooled copy to write and read again), and
# the release is moved into releases/ only once its checksum matched and it unpacked whole.
d=$1 rel=$2 sum=$3 z=$4
shift 4
tmp="$d/incoming/$rel.$$"
trap 'rm -rf -- "$tmp.d" "$tmp.fifo" "$tmp.sum"' EXIT
step receive
mkdir -p -- "$d/incoming" "$d/releases" "$d/shared" "$tmp.d"
unpack_verified "$tmp" "$sum" release "$z"
step link
for p in "$@"; do
  if [ ! -e "$d/shared/$p" ] && [ ! -L "$d/shared/$p" ]; then
    # The first release seeds a shared path it ships (a default .env, an empty log/).
    mkdir -p -- "$(dirname -- "$d/shared/$p")"
    if [ -e "$tmp.d/$p" ]; then cp -Rp -- "$tmp.d/$p" "$d/shared/$p"; else mkdir -p -- "$d/shared/$p"; fi
  fi
  rm -rf -- "$tmp.d/$p"
  mkdir -p -- "$(dirname -- "$tmp.d/$p")"
  ln -s -- "$d/shared/$p" "$tmp.d/$p"
done
place_release "$d" "$rel" "$tmp"
