# check RELEASE_PATH COMMAND RETRIES INTERVAL: run a command check until it passes or retries run out.
path=$1 cmd=$2 retries=$3 interval=$4
step check
cd -- "$path"
n=0
while :; do
  if run_command "$cmd"; then exit 0; else code=$?; fi
  n=$((n + 1))
  [ "$n" -gt "$retries" ] && exit "$code"
  printf 'conveyor: check failed with exit %s, retry %s of %s in %ss\n' "$code" "$n" "$retries" "$interval"
  sleep "$interval"
done
