# receive_url URL DEPLOY_TO RELEASE SHA256 COMPRESSION [SHARED...]: the host downloads the tarball itself
# (curl, else wget) into incoming/, then receives it exactly as `receive` does, verified against SHA256.
url=$1
shift
step download
mkdir -p -- "$1/incoming"
dl="$1/incoming/$2.$$.download"
if command -v curl > /dev/null 2>&1; then
  curl -fsS --retry 2 --connect-timeout 10 -o "$dl" -- "$url" || { rm -f -- "$dl"; fail 16 "cannot download the release (curl)"; }
elif command -v wget > /dev/null 2>&1; then
  wget -q -T 30 -O "$dl" -- "$url" || { rm -f -- "$dl"; fail 16 "cannot download the release (wget)"; }
else
  fail 17 "neither curl nor wget is installed on this host: install one, or use transfer: push"
fi
# The rest reads the download as its standard input; the name goes at once, the open file stays.
exec < "$dl"
rm -f -- "$dl"
