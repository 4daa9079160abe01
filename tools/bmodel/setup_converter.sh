#!/usr/bin/env bash
# The converter venvs' setup lives with `streamproc convert` (streamproc/convert/setup_converter.sh),
# which runs it on first use; this is the same script, for calling by hand. See its header.
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/streamproc/convert/setup_converter.sh" "$@"
