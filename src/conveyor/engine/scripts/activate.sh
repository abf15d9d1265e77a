# activate DEPLOY_TO RELEASE SWITCH_LINE READY_LINE RESTART [KEEP [PROTECTED...]]: switch current
# atomically, journal it, restart, and (given KEEP) prune in the same round trip.
# An empty RELEASE removes current (undoing a host's first deploy). READY_LINE is journaled once the
# restart has succeeded, so a re-run knows whether a host that already points at RELEASE really runs it.
d=$1 rel=$2 line=$3 ready=$4 restart=$5
shift 5
journal="$d/.conveyor/journal.jsonl"
# However this ends, say where current points: the controller goes by that, not by how far the steps got
# (a switch can fail after the link moved, a restart can fail before or after anything).
trap 'pointing "$d"; say "current=$at"' EXIT
step switch
[ -d "$d/.conveyor" ] || mkdir -p -- "$d/.conveyor"
# With CONVEYOR_EXPECT_CURRENT (a rollback planned from the state store), switch only a host that runs that
# release, has RELEASE, and whose journal says RELEASE is what that release replaced; otherwise change
# nothing and exit EXPECTATION_UNMET, and the controller reads the host first.
if [ -n "${CONVEYOR_EXPECT_CURRENT-}" ]; then
  pointing "$d"
  cur=$at
  [ "$cur" = "$CONVEYOR_EXPECT_CURRENT" ] ||
    fail "$EXIT_EXPECTATION_UNMET" "runs ${cur:-nothing}, not $CONVEYOR_EXPECT_CURRENT"
  [ -n "$rel" ] && [ -d "$d/releases/$rel" ] ||
    fail "$EXIT_EXPECTATION_UNMET" "release ${rel:-(none)} is not on this host"
  # The last deploy of it (journal lines have sorted keys; ids are plain words): the line the last deploy left in
  # .conveyor/last-deploy when that was a deploy of it (read by the shell itself), else the journal's (sed).
  last=
  [ ! -f "$d/.conveyor/last-deploy" ] || { IFS= read -r last < "$d/.conveyor/last-deploy" || :; }
  case $last in
    *"\"release\": \"$cur\""*) ;;
    *) last=$(sed -n "s/^.*{\"app\": /{\"app\": /; /\"event\": \"activate\".*\"kind\": \"deploy\".*\"release\": \"$cur\"/h; \${x;p;}" \
         "$journal" 2>/dev/null) || true ;;
  esac
  case $last in
    *"\"previous\": \"$rel\""*) ;;
    *) fail "$EXIT_EXPECTATION_UNMET" "its journal does not say $cur replaced $rel" ;;
  esac
fi
if [ -z "$rel" ]; then
  rm -f -- "$d/current"
else
  [ -d "$d/releases/$rel" ] || fail "$EXIT_RELEASE_MISSING" "release $rel is not on this host"
  ln -sfn -- "releases/$rel" "$d/current.tmp.$$"
  mv -fT -- "$d/current.tmp.$$" "$d/current"
fi
# A deploy's line also goes to .conveyor/last-deploy (written first: it never lags the journal), where a rollback
# finds it without reading the whole journal.
case $line in *'"kind": "deploy"'*) printf '%s\n' "$line" > "$d/.conveyor/last-deploy" ;; esac
# Appended as it is: were the last line torn (its writer killed mid-line), this entry joins it, and readers take
# the entry that ends the line (journal_entry in probe.py; the sed above cuts at its `{"app": `).
printf '%s\n' "$line" >> "$journal"
# A deploy carries the region's flags file (CONVEYOR_FLAGS_*: see write_flags), written before the restart so
# the new release starts with it; nothing of it reaches the restart's environment.
if [ -n "$rel" ] && [ -n "${CONVEYOR_FLAGS_SHA256-}" ]; then
  step flags
  write_flags "$d" "$CONVEYOR_FLAGS_PATH" "$CONVEYOR_FLAGS_CONTENT" "$CONVEYOR_FLAGS_SHA256"
fi
unset CONVEYOR_FLAGS_PATH CONVEYOR_FLAGS_CONTENT CONVEYOR_FLAGS_SHA256
step restart
if [ -n "$rel" ] && [ -n "$restart" ]; then
  # The restart writes to .conveyor/restart.log (made private the first time), shown once it has ended, and
  # only when it printed something, disarmed: a silent restart (the usual kind) costs no filter process, and a
  # server it leaves running holds that file, not this session. A subshell, so the cd does not change what a
  # relative DEPLOY_TO names for the ready line.
  log="$d/.conveyor/restart.log"
  if [ -L "$log" ] || [ ! -f "$log" ]; then rm -f -- "$log"; (umask 077 && : > "$log"); fi
  restarted=0
  (
    cd -- "$d/releases/$rel"
    export CONVEYOR_RELEASE_PATH="$d/releases/$rel"
    exec sh -c "$restart"
  ) < /dev/null > "$log" 2>&1 || restarted=$?
  if [ -s "$log" ]; then disarm "$log"; fi
  [ "$restarted" -eq 0 ] || exit "$restarted"
fi
printf '%s\n' "$ready" >> "$journal"
if [ "$#" -gt 0 ] && [ -n "$1" ]; then
  step prune
  LC_ALL=C prune_releases "$d" "$@"
fi
step done
