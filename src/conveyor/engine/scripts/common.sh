# Shared by every Conveyor host script. POSIX sh; needs tar, gzip (or zstd), sha256sum (openssl's is used where
# there), mkdir, ln, mv, rm, tee, awk, find.
# The first argument is this run's mark: markers carry it, and the controller believes only those that do.
set -eu
exec 2>&1
# Exit codes: the names of engine/exits.py (HostExit), written from it; a unit test keeps these lines in step.
EXIT_BAD_ARGUMENT=2
EXIT_CHECKSUM_MISMATCH=10
EXIT_UNPACK_FAILED=11
EXIT_BASE_MISSING=12
EXIT_NO_HARD_LINKS=13
EXIT_TOOL_MISSING=14
EXIT_EXPECTATION_UNMET=15
EXIT_DOWNLOAD_FAILED=16
EXIT_NO_DOWNLOADER=17
EXIT_SHARED_PATH_UNSAFE=18
EXIT_RELEASE_REFUSED=19
EXIT_RELEASE_MISSING=20
EXIT_CANNOT_WRITE=21
mark=$1
shift
unset CDPATH  # a relative `cd` goes where it says
# Who to stop if the controller gives up on this command (a timeout): this shell and its parent, the
# session's shell; the one that leads a process group is the group to stop (see the transport).
printf '@@conveyor pid=%s %s\n' "$$" "$PPID"
say() { printf '@@conveyor %s %s\n' "$mark" "$1"; }
step() { say "step=$1"; }
fail() { code=$1; shift; printf 'conveyor: %s\n' "$*"; exit "$code"; }
# pointing DEPLOY_TO: set `at` to the release DEPLOY_TO/current points at (the link's last component; empty with no
# link, `?` when it cannot be read). The shell's own `cd -P` reads it without starting a process when the link
# leads to that release's directory (checked with -ef); readlink(1) reads it otherwise (a dangling link, a
# release that is itself a link elsewhere). Every step a host takes reads it at least once.
pointing() {
  at=
  [ -L "$1/current" ] || return 0
  pw=$PWD
  if cd -P -- "$1/current" 2> /dev/null; then
    at=${PWD##*/}
    cd -- "$pw" || fail "$EXIT_CANNOT_WRITE" "cannot return to $pw"
    if [ -n "$at" ] && [ "$1/releases/$at" -ef "$1/current" ] 2> /dev/null; then return 0; fi
  fi
  at=$(readlink -- "$1/current") || at=?
  at=${at##*/}
}
# disarm [FILE]: what a command from the config printed (FILE, or stdin), passed on line by line with a space
# before a line that starts like a marker, and an unfinished last line ended: nothing it prints can pass for a
# marker, not even with this run's mark, which it could read in ps.
disarm() { LC_ALL=C awk '{ if (index($0, "@@conveyor") == 1) printf " "; print; fflush() }' "$@"; }
# run_command COMMAND: run a command from the config (sh -c) and return its status, its output (both streams)
# disarmed as it comes.
run_command() {
  exec 4>&1
  rc=$( { { s=0; sh -c "$1" 2>&1 3>&- 4>&- || s=$?; printf '%s' "$s" >&3; } | disarm >&4 3>&-; } 3>&1 ) || :
  exec 4>&-
  return "${rc:-1}"
}
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
      say "pruned=$name"
    fi
  done
}
# need TOOL...: fail TOOL_MISSING unless every TOOL is installed here (a missing tool is the cause, not what it breaks).
need() {
  for nt in "$@"; do
    command -v "$nt" > /dev/null 2>&1 || fail "$EXIT_TOOL_MISSING" "$nt is not installed on this host"
  done
}
# host_cause TEXT: the reason this host could not write that a tool's messages TEXT (in the C locale) name, if
# any: no space, quota, read-only file system, permission, too many open files.
host_cause() {
  for hc in "No space left on device" "Disk quota exceeded" "Read-only file system" "Permission denied" \
    "Operation not permitted" "Too many open files"; do
    case $1 in *"$hc"*) printf '%s' "$hc"; return 0 ;; esac
  done
}
# room_cause DIR: why this host cannot write in DIR, learnt by writing a little there (1 MiB, then removed), for
# tools that saw only a short write and do not say why (tar's "Wrote only", curl's exit 23).
room_cause() {
  rp="$1/.conveyor-room.$$"
  re=$(LC_ALL=C dd if=/dev/zero of="$rp" bs=1024 count=1024 2>&1) || :
  rm -f -- "$rp"
  host_cause "$re"
}
# must WHAT COMMAND...: run COMMAND; if it fails, fail CANNOT_WRITE saying this host cannot WHAT, and why in the
# words of the error it gave.
must() {
  mw=$1
  shift
  if me=$(LC_ALL=C "$@" 2>&1); then
    [ -z "$me" ] || printf '%s\n' "$me"
    return 0
  fi
  printf '%s\n' "$me"
  mc=$(host_cause "$me")
  fail "$EXIT_CANNOT_WRITE" "cannot $mw: ${mc:-$(printf '%s\n' "$me" | tail -n 1)}"
}
# untar DIR WHAT COMPRESSION: unpack the tarball on stdin into DIR, then read the rest of it, so the checksum
# covers every byte whatever tar did. Exits 0; or, with tar's first complaints and a line that says why,
# CANNOT_WRITE when this host cannot write (no space, permission...), UNPACK_FAILED when the tarball does not unpack.
untar() {
  xs=0
  case $3 in
    gzip) xe=$(LC_ALL=C tar -xzof - -C "$1" 2>&1) || xs=$? ;;
    zstd) xe=$( { zstd -dqc | LC_ALL=C tar -xof - -C "$1"; } 2>&1) || xs=$? ;;
    *) xe=$(LC_ALL=C tar -xof - -C "$1" 2>&1) || xs=$? ;;
  esac
  cat > /dev/null
  [ -z "$xe" ] || printf '%s\n' "$xe" | head -n 5
  [ "$xs" -ne 0 ] || exit 0
  xc=$(host_cause "$xe")
  if [ -z "$xc" ]; then case $xe in *"Wrote only"*) xc=$(room_cause "$1") ;; esac; fi
  [ -z "$xc" ] || fail "$EXIT_CANNOT_WRITE" "cannot unpack the $2 into $1: $xc"
  fail "$EXIT_UNPACK_FAILED" "cannot unpack the $2${xe:+: $(printf '%s\n' "$xe" | head -n 1)}"
}
# unpack_verified TMP SHA256 WHAT COMPRESSION: unpack the tarball on stdin (gzip, zstd or none) into TMP.d
# while hashing it (one pass, no spooled copy), then inspect it. The first real cause is the one reported: a
# missing tool (TOOL_MISSING), then a host that cannot write (CANNOT_WRITE), then a checksum mismatch
# (CHECKSUM_MISMATCH), then a tarball that does not unpack (UNPACK_FAILED). A damaged stream is caught by the
# checksum, which covers every byte. Uses TMP.fifo.
# sha256_of: the SHA-256 of stdin, its hex digits first (the rest of the line is the tool's). OpenSSL's where the
# host has it: it uses the CPU's SHA instructions, about six times faster than coreutils' sha256sum for a
# release (measured on the benchmark's hosts: 14.6 MB in 7 ms against 45), and the hash is most of what
# verifying costs a host. sha256sum otherwise.
sha256_of() {
  if command -v openssl > /dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi
}
unpack_verified() {
  ut=$1 usum=$2 uwhat=$3 uz=$4
  case $uz in
    gzip) need gzip ;;
    zstd) need zstd ;;
    none) ;;
    *) fail "$EXIT_BAD_ARGUMENT" "unknown compression $uz" ;;
  esac
  need tar sha256sum tee mkfifo find
  must "make $ut.fifo" mkfifo -- "$ut.fifo"
  # The hash stays in memory (a sum written to a full disk would read as a mismatch): it is taken here, while
  # tar unpacks in the background, from the tarball on fd 5 (a background job's own stdin is /dev/null).
  exec 5<&0
  { tee -- "$ut.fifo" <&5 | untar "$ut.d" "$uwhat" "$uz"; } &
  uunpack=$!
  exec 5<&-
  ugot=$(sha256_of < "$ut.fifo") || ugot=
  ustatus=0
  wait "$uunpack" || ustatus=$?
  if [ "$ustatus" -eq "$EXIT_CANNOT_WRITE" ]; then step unpack; exit "$EXIT_CANNOT_WRITE"; fi
  step verify
  ugot=${ugot%% *}
  [ "$ugot" = "$usum" ] || fail "$EXIT_CHECKSUM_MISMATCH" "checksum mismatch: expected $usum, received ${ugot:-nothing}"
  step unpack
  case $ustatus in
    0) ;;
    "$EXIT_UNPACK_FAILED") exit "$EXIT_UNPACK_FAILED" ;;
    *) fail "$EXIT_UNPACK_FAILED" "cannot unpack the $uwhat (exit $ustatus)" ;;
  esac
  inspect_release "$ut.d" "$uwhat"
}
# inspect_release DIR WHAT: refuse (RELEASE_REFUSED) what no release may hold, whatever brought it here (push, pull,
# converge, delta) and whatever the tarball's checksum says: setuid or setgid files, device nodes, fifos,
# sockets, and symlinks that leave DIR, absolute or climbing out of it. find names the suspects; a small
# script says why the first of them may not stay (see release_suspect).
inspect_release() {
  step inspect
  case $1 in /*) idir=$1 ;; *) idir=./$1 ;; esac  # find takes a word that starts with - for an option
  why=$(LC_ALL=C find "$idir" \( -type l -o -type b -o -type c -o -type p -o -type s -o \
    \( -type f \( -perm -4000 -o -perm -2000 \) \) \) -exec sh -c "$release_suspect" "$idir" {} + 2>&1) || :
  [ -z "$why" ] || fail "$EXIT_RELEASE_REFUSED" "refused the $2: $(printf '%s\n' "$why" | head -n 1)"
}
# Run by find as `sh -c "$release_suspect" DIR PATH...`: print why the first PATH that may not be in a release
# is refused, and fail; a symlink that stays inside DIR passes. A symlink is followed with cd -P from where it
# lies, through the release's own links; one that leads nowhere (yet) is judged by the levels it climbs.
release_suspect='
root=$(cd -P -- "$0" && pwd -P)
printable() { printf "%s" "$1" | LC_ALL=C tr -c "[:print:]" "?"; }
levels() { set -f; IFS=/; set -- $1; unset IFS; set +f; n=0; for c in "$@"; do [ -z "$c" ] || n=$((n + 1)); done; echo "$n"; }
climbs() {
  n=$1; set -f; IFS=/; set -- $2; unset IFS; set +f
  for c in "$@"; do
    case $c in ..) n=$((n - 1)); [ "$n" -ge 0 ] || return 0 ;; .|"") ;; *) n=$((n + 1)) ;; esac
  done
  return 1
}
for p in "$@"; do
  name=$(printable "${p#"$0"/}")
  if [ -L "$p" ]; then
    t=$(readlink -- "$p")
    case $t in
      /*) echo "$name is a symlink to an absolute path ($(printable "$t"))"; exit 1 ;;
      ..|../*|*/..|*/../*) ;;
      *) continue ;;
    esac
    d=${p%/*}
    u=$t
    while :; do case $u in */) u=${u%/} ;; *) break ;; esac; done
    case ${u##*/} in ..|.) ud=$u ;; *) ud=${u%/*} ;; esac
    if at=$(cd -P -- "$d" 2> /dev/null && cd -P -- "$ud" 2> /dev/null && pwd -P); then
      case $at/ in "$root"/*) continue ;; esac
    elif ! climbs "$(levels "${d#"$0"}")" "$t"; then
      continue
    fi
    echo "$name is a symlink leaving the release ($(printable "$t"))"; exit 1
  elif [ -b "$p" ] || [ -c "$p" ]; then echo "$name is a device node"; exit 1
  elif [ -p "$p" ]; then echo "$name is a fifo"; exit 1
  elif [ -S "$p" ]; then echo "$name is a socket"; exit 1
  elif [ -u "$p" ]; then echo "$name is setuid"; exit 1
  elif [ -g "$p" ]; then echo "$name is setgid"; exit 1
  fi
done'
# link_above DIR PATH: print the first directory above PATH (relative to DIR) that is a symlink, or fail if
# none is: removing or writing PATH would go through that link, out of the release (into shared/, or anywhere).
link_above() {
  la=$2 lp=
  while :; do
    case $la in */*) ;; *) return 1 ;; esac
    lp=${lp:+$lp/}${la%%/*}
    la=${la#*/}
    if [ -L "$1/$lp" ]; then printf '%s' "$lp"; return 0; fi
  done
}
# unlink_shared DIR SHARED...: remove each shared path from DIR, a release being built (SHARED_PATH_UNSAFE if one lies
# under a link). A release that came from a base holds the base's links into shared/: removed first, nothing
# that follows (a deletion, a member of a delta) can reach through them.
unlink_shared() {
  ud=$1
  shift
  for p in "$@"; do
    if above=$(link_above "$ud" "$p"); then
      fail "$EXIT_SHARED_PATH_UNSAFE" "shared path $p lies under $above, which is a link"
    fi
    rm -rf -- "$ud/$p"
  done
}
# link_shared DEPLOY_TO DIR SHARED...: make each shared path in DIR (a release being built) a link into
# DEPLOY_TO/shared/. Only a shared path the host does not have yet is written: it is seeded with what the
# release ships there (a default .env, an empty log/) or made an empty directory. One that exists is never
# written to: the release's own copy of it is dropped.
link_shared() {
  sd=$1 sr=$2
  shift 2
  for p in "$@"; do
    for q in "$@"; do
      case $q in "$p"/*) fail "$EXIT_SHARED_PATH_UNSAFE" "shared paths $p and $q overlap: list only $p" ;; esac
    done
  done
  for p in "$@"; do
    if above=$(link_above "$sr" "$p"); then
      fail "$EXIT_SHARED_PATH_UNSAFE" "shared path $p lies under $above, which is a link"
    fi
    if [ ! -e "$sd/shared/$p" ] && [ ! -L "$sd/shared/$p" ]; then
      must "make shared/$p" mkdir -p -- "$(dirname -- "$sd/shared/$p")"
      if [ -e "$sr/$p" ]; then
        must "seed shared/$p" cp -Rp -- "$sr/$p" "$sd/shared/$p"
      else
        must "make shared/$p" mkdir -- "$sd/shared/$p"
      fi
    fi
    rm -rf -- "$sr/$p"
    must "link shared/$p" mkdir -p -- "$(dirname -- "$sr/$p")"
    must "link shared/$p" ln -s -- "$sd/shared/$p" "$sr/$p"
  done
}
# place_release DEPLOY_TO RELEASE TMP: move the complete TMP.d into releases/RELEASE (atomic rename).
place_release() {
  step place
  if [ -d "$1/releases/$2" ]; then
    printf 'conveyor: release %s was already complete here\n' "$2"
  else
    mv -- "$3.d" "$1/releases/$2"
  fi
}
# write_flags DEPLOY_TO FILE CONTENT SHA256: make FILE (relative: under DEPLOY_TO) hold CONTENT, whose sha256 is
# SHA256: written beside it and renamed over it, what it replaced kept in DEPLOY_TO/.conveyor/ (never in
# shared/). Says was=SHA256 of the file it found (empty: none), then unchanged=yes, or changed=yes once replaced
# (and sets wchanged to no or yes).
write_flags() {
  wd=$1 wf=$2 wc=$3 ws=$4 wchanged=no
  case $wf in /*) ;; *) wf="$wd/$wf" ;; esac
  wk="$wd/.conveyor/flags.previous.json"
  need sha256sum
  must "make ${wf%/*}" mkdir -p -- "${wf%/*}" "$wd/.conveyor"
  ww=
  if [ -f "$wf" ]; then ww=$(sha256sum < "$wf") || ww=; ww=${ww%% *}; fi
  say "was=$ww"
  if [ "$ww" = "$ws" ]; then say "unchanged=yes"; return 0; fi
  wchanged=yes
  if [ -n "$ww" ]; then
    must "keep the flags file it replaces" cp -- "$wf" "$wk.tmp.$$"
    must "keep the flags file it replaces" mv -f -- "$wk.tmp.$$" "$wk"
    rm -f -- "$wk.absent"
  else
    rm -f -- "$wk"
    : > "$wk.absent"
  fi
  printf '%s' "$wc" > "$wf.conveyor.$$" || { rm -f -- "$wf.conveyor.$$"; fail "$EXIT_CANNOT_WRITE" "cannot write $wf"; }
  wg=$(sha256sum < "$wf.conveyor.$$") || wg=
  [ "${wg%% *}" = "$ws" ] || { rm -f -- "$wf.conveyor.$$"; fail "$EXIT_CHECKSUM_MISMATCH" "the flags file written is not the one sent"; }
  must "replace $wf" mv -f -- "$wf.conveyor.$$" "$wf"
  say "changed=yes"
}
