# probe DEPLOY_TO RELEASE: make the layout, report what runs here, what is on disk, the journal's tail.
d=$1 rel=$2
step prepare
mkdir -p -- "$d/releases" "$d/shared" "$d/incoming" "$d/.conveyor"
cur=
if [ -L "$d/current" ]; then cur=$(readlink -- "$d/current"); cur=${cur##*/}; fi
say "current=$cur"
if [ -n "$rel" ] && [ -d "$d/releases/$rel" ]; then say has_release=yes; else say has_release=no; fi
if command -v zstd > /dev/null 2>&1; then say zstd=yes; fi
for r in "$d"/releases/*; do [ -d "$r" ] && say "release=${r##*/}"; done
say journal
if [ -f "$d/.conveyor/journal.jsonl" ]; then tail -n 200 -- "$d/.conveyor/journal.jsonl"; fi
