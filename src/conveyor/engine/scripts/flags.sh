# flags DEPLOY_TO FILE CONTENT SHA256 MODE LINE ON_CHANGE: write (MODE write) or switch back (MODE revert) the
# host's flags file, the one file this feature owns, in one round trip: the new content goes to a temporary
# file beside FILE and is renamed over it (a reader sees the old file or the new one, never a torn one); what
# it replaced is kept in .conveyor/, never in shared/. LINE is journaled in .conveyor/flags.jsonl; ON_CHANGE,
# when given, runs in the current release after a change. Says was=SHA256 of the file it found (empty: none),
# release=the release current points at, changed=yes once the file was replaced.
d=$1 file=$2 content=$3 sum=$4 mode=$5 line=$6 on_change=$7
keep="$d/.conveyor/flags.previous.json"
pointing "$d"
cur=${at#\?}
say "release=$cur"
step flags
case $mode in
  write)
    write_flags "$d" "$file" "$content" "$sum"
    [ "$wchanged" = yes ] || { step done; exit 0; }
    ;;
  revert)
    need sha256sum
    was=
    if [ -f "$file" ]; then was=$(sha256sum < "$file") || was=; was=${was%% *}; fi
    say "was=$was"
    if [ -f "$keep" ]; then
      must "restore $file" cp -- "$keep" "$file.conveyor.$$"
      must "restore $file" mv -f -- "$file.conveyor.$$" "$file"
    elif [ -f "$keep.absent" ]; then
      rm -f -- "$file"
    else
      fail "$EXIT_RELEASE_MISSING" "no earlier flags file is kept on this host to switch back to"
    fi
    say "changed=yes"
    ;;
  *) fail "$EXIT_BAD_ARGUMENT" "unknown mode $mode" ;;
esac
journal="$d/.conveyor/flags.jsonl"
if [ -s "$journal" ] && [ -n "$(tail -c 1 -- "$journal")" ]; then printf '\n' >> "$journal"; fi
printf '%s\n' "$line" >> "$journal"
if [ -n "$on_change" ]; then
  step on_change
  if [ -n "$cur" ] && [ -d "$d/releases/$cur" ]; then
    cd -- "$d/releases/$cur"
    export CONVEYOR_RELEASE="$cur" CONVEYOR_RELEASE_PATH="$d/releases/$cur"
  else
    cd -- "$d"
  fi
  run_command "$on_change" || fail "$?" "on_change failed"
fi
step done
