# probe DEPLOY_TO RELEASE [NAME TIMEOUT COMMAND]...: make the layout, report what runs here, what is on disk,
# each component's probe (engine/stack.py), the journal's tail.
d=$1 rel=$2
shift 2
step prepare
for x in releases shared incoming .conveyor; do
  [ -d "$d/$x" ] || { mkdir -p -- "$d/releases" "$d/shared" "$d/incoming" "$d/.conveyor"; break; }
done
pointing "$d"
[ "$at" != "?" ] || fail 1 "cannot read where $d/current points"
cur=$at
say "current=$cur"
if [ -n "$rel" ] && [ -d "$d/releases/$rel" ]; then say has_release=yes; else say has_release=no; fi
if command -v zstd > /dev/null 2>&1; then say zstd=yes; fi
for r in "$d"/releases/*; do [ -d "$r" ] && say "release=${r##*/}"; done
# Components: each probe runs in DEPLOY_TO under timeout(1) where the host has it (else the step's own timeout
# stops a hung one), with no input. Of its output 4097 bytes are kept (one more than a value may have) and
# 1024 of its errors, read through fifos by two head(1)s. A value that is one line of printable text is said as
# it is, after a `=`, at the end of the marker; anything else (and the errors) in hex: nothing a probe prints
# can end the line or pass for a marker. Few processes a component: the probe, timeout and two heads.
if [ "$#" -ge 3 ]; then
  back=$PWD
  cd -- "$d"
  pt="$PWD/incoming/.probe.$$"
  trap 'rm -f -- "$pt.out" "$pt.err" "$pt.o" "$pt.e"' EXIT
  mkfifo -- "$pt.o" "$pt.e"
  limiter=
  if command -v timeout > /dev/null 2>&1; then limiter=yes; fi
  hex() { od -An -v -tx1 < "$1" | tr -d ' \n'; }
  while [ "$#" -ge 3 ]; do
    pn=$1 pl=$2 pc=$3
    shift 3
    head -c 4097 < "$pt.o" > "$pt.out" &
    head -c 1024 < "$pt.e" > "$pt.err" &
    ps=0
    if [ -n "$limiter" ]; then
      timeout -k 1 "$pl" sh -c "$pc" < /dev/null > "$pt.o" 2> "$pt.e" || ps=$?
    else
      sh -c "$pc" < /dev/null > "$pt.o" 2> "$pt.e" || ps=$?
    fi
    wait
    pv= pw= pe=-
    { IFS= read -r pv || :; IFS= read -r pw && pw=more || :; } < "$pt.out"
    if [ -z "$pw" ] && [ "${#pv}" -le 4096 ]; then
      case $pv in *[![:print:]]*) pv=$(hex "$pt.out"); pz=$((${#pv} / 2)) ;; *) pz=${#pv}; pv="=$pv" ;; esac
    else
      pv=$(hex "$pt.out")
      pz=$((${#pv} / 2))
    fi
    [ "$pz" -le 4096 ] || pv=-
    [ ! -s "$pt.err" ] || pe=$(hex "$pt.err")
    say "component=$pn $ps $pz $pe ${pv:--}"
  done
  cd -- "$back"
fi
say journal
if [ -f "$d/.conveyor/journal.jsonl" ]; then tail -n 200 -- "$d/.conveyor/journal.jsonl"; fi
