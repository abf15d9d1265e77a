# probe DEPLOY_TO RELEASE: make the layout, report what runs here, what is on disk, the journal's tail.
d=$1 rel=$2
step prepare
mkdir -p -- "$d/releases" "$d/shared" "$d/incoming" "$d/.conveyor"
cur=
if [ -L "$d/current" ]; then cur=$(readlink -- "$d/current"); cur=${cur##*/}; fi
printf '@@conveyor current=%s\n' "$cur"
if [ -n "$rel" ] && [ -d "$d/releases/$rel" ]; then printf '@@conveyor has_release=yes\n'; else printf '@@conveyor has_release=no\n'; fi
if command -v zstd > /dev/null 2>&1; then printf '@@conveyor zstd=yes\n'; fi
for r in "$d"/releases/*; do [ -d "$r" ] && printf '@@conveyor release=%s\n' "${r##*/}"; done
printf '@@conveyor journal\n'
if [ -f "$d/.conveyor/journal.jsonl" ]; then tail -n 200 -- "$d/.conveyor/journal.jsonl"; fi
