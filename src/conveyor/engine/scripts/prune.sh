# prune DEPLOY_TO KEEP [PROTECTED...]: keep the KEEP newest releases and every protected one; empty incoming/.
step prune
export LC_ALL=C
prune_releases "$@"
