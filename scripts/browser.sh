#!/usr/bin/env bash
# The browser tests drive Debian's chromium; install it where we can. Under CI a missing browser fails the tests.
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "Could not install Debian's chromium; browser tests will fail under CI=true." >&2
else
  echo "Debian's chromium is missing (apt-get install chromium); browser tests will be skipped outside CI." >&2
fi
