# probe DEPLOY_TO RELEASE [NAME TIMEOUT COMMAND]...: make the layout, report what runs here, what is on disk,
# each component's probe (engine/stack.py), the journal's tail.
d=$1 rel=$2
shift 2
step prepare
mkdir -p -- "$d/releases" "$d/shared" "$d/incoming" "$d/.conveyor"
cur=
if [ -L "$d/current" ]; then cur=$(readlink -- "$d/current"); cur=${cur##*/}; fi
say "current=$cur"
if [ -n "$rel" ] && [ -d "$d/releases/$rel" ]; then say has_release=yes; else say has_release=no; fi
if command -v zstd > /dev/null 2>&1; then say zstd=yes; fi
for r in "$d"/releases/*; do [ -d "$r" ] && say "release=${r##*/}"; done
# Components: each probe runs in DEPLOY_TO under timeout(1) where the host has it (else the step's own timeout
# stops a hung one), with no input. Of its output 4097 bytes are kept (one more than a value may have) and
# 1024 of its errors; both are said in hex, so nothing it prints is a marker or ends the line.
if [ "$#" -ge 3 ]; then
  pt="$d/incoming/.probe.$$"
  trap 'rm -f -- "$pt.out" "$pt.err" "$pt.rc"' EXIT
  limiter=
  if command -v timeout > /dev/null 2>&1; then limiter=timeout; fi
  hex() { if [ -s "$1" ]; then od -An -v -tx1 < "$1" | tr -d ' \n'; else printf -- -; fi; }
  while [ "$#" -ge 3 ]; do
    pn=$1 pl=$2 pc=$3
    shift 3
    {
      {
        ps=0
        ( cd -- "$d" && if [ -n "$limiter" ]; then exec timeout -k 1 "$pl" sh -c "$pc"; else exec sh -c "$pc"; fi
        ) < /dev/null 2>&1 1>&4 4>&- || ps=$?
        printf '%s\n' "$ps" > "$pt.rc"
      } | head -c 1024 > "$pt.err"
    } 4>&1 | head -c 4097 > "$pt.out"
    ps=$(cat -- "$pt.rc" 2>/dev/null) || ps=
    pz=$(wc -c < "$pt.out" | tr -d ' ')
    [ "$pz" -le 4096 ] || : > "$pt.out"
    say "component=$pn ${ps:-255} $pz $(hex "$pt.out") $(hex "$pt.err")"
  done
fi
say journal
if [ -f "$d/.conveyor/journal.jsonl" ]; then tail -n 200 -- "$d/.conveyor/journal.jsonl"; fi
