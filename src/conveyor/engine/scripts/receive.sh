# receive DEPLOY_TO RELEASE SHA256 COMPRESSION [SHARED...]: the tarball on stdin becomes releases/RELEASE,
# complete.
# One pass: the bytes are hashed while they are unpacked (no spooled copy to write and read again), and
# the release is moved into releases/ only once its checksum matched and it unpacked whole.
d=$1 rel=$2 sum=$3 z=$4
shift 4
tmp="$d/incoming/$rel.$$"
trap 'rm -rf -- "$tmp.d" "$tmp.fifo"' EXIT
step receive
must "make the layout under $d" mkdir -p -- "$d/incoming" "$d/releases" "$d/shared" "$tmp.d"
unpack_verified "$tmp" "$sum" release "$z"
step link
link_shared "$d" "$tmp.d" "$@"
place_release "$d" "$rel" "$tmp"
