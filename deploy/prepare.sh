#!/bin/sh
# docker-compose.yml's one-shot `prepare` service, run as root before the others
# start: the data folders (bind mounts the engine made as root, named volumes)
# are given to the app's user, then the database is migrated as that user.
set -eu
for folder in "$LABQUEUE_USER_DATA_DIR" /app/failedAnalyses; do
    mkdir -p "$folder"
    chown 10001:10001 "$folder"
    chmod 0750 "$folder"
done
exec setpriv --reuid 10001 --regid 10001 --clear-groups \
    flask --app frontend db upgrade
