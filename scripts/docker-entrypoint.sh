#!/bin/sh
# The image's entry point: the first argument chooses the role, `all` (the default) runs every role in one
# process. Anything else is run as a command (e.g. `sh` to look around).
set -e
role="${1:-all}"
case "$role" in
  webapi | worker | notifications) entry="src/apps/$role/main.ts" ;;
  all) entry="src/main.ts" ;;
  *) exec "$@" ;;
esac
# exec: node becomes PID 1 and gets SIGTERM from `docker stop` directly (it drains, then exits).
exec node --import tsx "$entry"
