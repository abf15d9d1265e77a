# receive_delta DEPLOY_TO RELEASE BASE SHA256 COMPRESSION NSHARED [SHARED...] [DELETED...]: build releases/RELEASE from
# releases/BASE (hard links) and the delta tarball on stdin, complete before it is placed.
d=$1 rel=$2 base=$3 sum=$4 z=$5 nshared=$6
shift 6
tmp="$d/incoming/$rel.$$"
trap 'rm -rf -- "$tmp.d" "$tmp.fifo"' EXIT
step receive
[ -d "$d/releases/$base" ] || fail "$EXIT_BASE_MISSING" "base release $base is not on this host"
i=0
for p in "$@"; do
  i=$((i + 1))
  [ "$i" -le "$nshared" ] || break
  # A shared path the host lacks is seeded from the whole release (what it ships there), never from a delta.
  [ -e "$d/shared/$p" ] || [ -L "$d/shared/$p" ] || fail "$EXIT_BASE_MISSING" "shared path $p is not on this host yet"
done
must "make the layout under $d" mkdir -p -- "$d/incoming" "$d/releases" "$d/shared"
# Hard links to the base: the files stay shared until the delta replaces one (tar unlinks before writing).
# A host that cannot hard-link gets the whole release (NO_HARD_LINKS); one that cannot write at all says so
# (CANNOT_WRITE).
if ! le=$(LC_ALL=C cp -al -- "$d/releases/$base" "$tmp.d" 2>&1); then
  printf '%s\n' "$le" | head -n 5
  case $(host_cause "$le") in
    "No space left on device"|"Disk quota exceeded"|"Read-only file system"|"Too many open files")
      fail "$EXIT_CANNOT_WRITE" "cannot link the base release: $(host_cause "$le")" ;;
  esac
  fail "$EXIT_NO_HARD_LINKS" "cannot link the base release (needs cp -al)"
fi
# The base's shared paths are links into shared/: they go first (the shared paths lead the arguments), so
# neither a deletion nor a member of the delta can follow one into what the host keeps there.
i=0
for p in "$@"; do
  i=$((i + 1))
  if [ "$i" -le "$nshared" ]; then unlink_shared "$tmp.d" "$p"; else rm -rf -- "$tmp.d/$p"; fi
done
# From here on the arguments are the shared paths alone.
i=0
for p in "$@"; do
  i=$((i + 1))
  shift
  [ "$i" -gt "$nshared" ] || set -- "$@" "$p"
done
unpack_verified "$tmp" "$sum" delta "$z"
step link
link_shared "$d" "$tmp.d" "$@"
place_release "$d" "$rel" "$tmp"
