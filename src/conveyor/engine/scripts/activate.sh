# activate DEPLOY_TO RELEASE SWITCH_LINE READY_LINE RESTART: switch current atomically, journal it, restart.
# An empty RELEASE removes current (undoing a host's first deploy). READY_LINE is journaled once the
# restart has succeeded, so a re-run knows whether a host that already points at RELEASE really runs it.
d=$1 rel=$2 line=$3 ready=$4 restart=$5
step switch
mkdir -p -- "$d/.conveyor"
if [ -z "$rel" ]; then
  rm -f -- "$d/current"
else
  [ -d "$d/releases/$rel" ] || fail 20 "release $rel is not on this host"
  ln -sfn -- "releases/$rel" "$d/current.tmp.$$"
  mv -fT -- "$d/current.tmp.$$" "$d/current"
fi
printf '%s\n' "$line" >> "$d/.conveyor/journal.jsonl"
step restart
if [ -n "$rel" ] && [ -n "$restart" ]; then
  cd -- "$d/releases/$rel"
  export CONVEYOR_RELEASE_PATH="$d/releases/$rel"
  sh -c "$restart"
fi
printf '%s\n' "$ready" >> "$d/.conveyor/journal.jsonl"
step done
