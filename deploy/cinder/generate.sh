#!/usr/bin/env bash
# Regenerates the Python gRPC stubs of volrep's APIs into volrep_cinder/gen/.
#
# Every proto under proto/volrep is compiled (the same set `buf generate`
# compiles for Go), with python3-grpc-tools from Debian, so the output
# depends only on the .proto files and that package's version: running this
# twice gives the same tree. google/protobuf/*.proto (the well-known types)
# are not generated: their modules ship with python3-protobuf.
#
# The generated modules import each other as volrep.<api>.v1; they are
# rewritten to import as volrep_cinder.gen.volrep.<api>.v1 so the stubs live
# inside the driver package.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# The Debian interpreter: it is the one that sees python3-grpc-tools,
# python3-grpcio and python3-cinder (a pyenv or venv python3 earlier on
# PATH usually does not).
python=${VOLREP_PYTHON:-/usr/bin/python3}
out=$here/volrep_cinder/gen

if ! "$python" -c 'import grpc_tools.protoc' 2>/dev/null; then
	echo "generate.sh: $python cannot import grpc_tools; apt-get install python3-grpc-tools" >&2
	exit 1
fi
wkt=$("$python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')

mapfile -t protos < <(cd "$root/proto" && find volrep -name '*.proto' | sort)
if [ "${#protos[@]}" -eq 0 ]; then
	echo "generate.sh: no .proto files under $root/proto" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root/proto" && "$python" -m grpc_tools.protoc -I. -I"$wkt" \
	--python_out="$tmp" --grpc_python_out="$tmp" "${protos[@]}")

# Package-relative imports, and an __init__.py in every package directory.
find "$tmp" -name '*.py' -print0 | xargs -0 sed -i -E \
	-e 's/^from volrep\.([A-Za-z0-9_.]+) import /from volrep_cinder.gen.volrep.\1 import /' \
	-e 's/^import volrep\.([A-Za-z0-9_.]+)/import volrep_cinder.gen.volrep.\1/'
printf '"""Generated gRPC stubs of volrep'"'"'s APIs: run deploy/cinder/generate.sh; do not edit."""\n' >"$tmp/__init__.py"
find "$tmp" -mindepth 1 -type d -print0 | while IFS= read -r -d '' d; do
	: >"$d/__init__.py"
done

# Replace the old tree whole, so a deleted proto loses its stubs.
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -R "$tmp" "$out"
chmod -R u=rwX,go=rX "$out"
echo "generate.sh: ${#protos[@]} protos -> ${out#"$root"/}"
