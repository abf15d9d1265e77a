# receive_url URL DEPLOY_TO RELEASE SHA256 COMPRESSION [SHARED...]: the host downloads the tarball itself
# (curl, else wget) into incoming/, then receives it exactly as `receive` does, verified against SHA256.
url=$1
shift
step download
must "make the layout under $1" mkdir -p -- "$1/incoming"
dl="$1/incoming/$2.$$.download"
trap 'rm -f -- "$dl"' EXIT
# A download this host cannot write (no space...) fails CANNOT_WRITE, told apart from one the store or the
# network refused (DOWNLOAD_FAILED).
if command -v curl > /dev/null 2>&1; then
  gs=0
  ge=$(LC_ALL=C curl -fsS --retry 2 --connect-timeout 10 -o "$dl" -- "$url" 2>&1) || gs=$?
  if [ "$gs" -eq 23 ]; then  # curl says only that it could not write
    gp=$(room_cause "$1/incoming")
    [ -z "$gp" ] || ge="$ge ($gp)"
  fi
elif command -v wget > /dev/null 2>&1; then
  gs=0
  ge=$(LC_ALL=C wget -q -T 30 -O "$dl" -- "$url" 2>&1) || gs=$?
else
  fail "$EXIT_NO_DOWNLOADER" "neither curl nor wget is installed on this host: install one, or use transfer: push"
fi
if [ "$gs" -ne 0 ]; then
  printf '%s\n' "$ge"
  gc=$(host_cause "$ge")
  [ -z "$gc" ] || fail "$EXIT_CANNOT_WRITE" "cannot write the release to $1/incoming: $gc"
  fail "$EXIT_DOWNLOAD_FAILED" "cannot download the release: $(printf '%s\n' "$ge" | tail -n 1)"
fi
# The rest reads the download as its standard input; the name goes at once, the open file stays.
exec < "$dl"
rm -f -- "$dl"
