#!/bin/sh
# The container image's entry point: `docker run IMAGE COMMAND [ARGS...]` runs `whitebill COMMAND [ARGS...]`
# (the image's CMD is `serve`). With WHITEBILL_MIGRATE_ON_START=1 the database migrations are applied first
# (`whitebill migrate`, which does nothing on an up-to-date database), for a deployment of one container;
# where several containers share a database, run the migration once instead (compose.yaml's `migrate`
# service): two processes applying the same migration at once would race.
#
# whitebill then replaces this shell (exec): it is the container's main process and receives its signals
# itself (`docker stop` sends SIGTERM; `whitebill serve` finishes its requests and exits 0).
set -eu

if [ "$#" -eq 0 ]; then
  set -- serve
fi

case "${WHITEBILL_MIGRATE_ON_START:-0}" in
  1 | true | yes | on)
    if [ "$1" != migrate ]; then
      whitebill migrate
    fi
    ;;
  0 | false | no | off | "") ;;
  *)
    echo "whitebill: WHITEBILL_MIGRATE_ON_START=${WHITEBILL_MIGRATE_ON_START} is 1 (migrate first) or 0" >&2
    exit 2
    ;;
esac

exec whitebill "$@"
