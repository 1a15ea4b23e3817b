#!/usr/bin/env bash
# Makes a new Ferrite driver crate from the template (drivers/template):
#   scripts/new_driver.sh <name> <folder>
# <name> is the driver's and its backend's name (lowercase letters, digits, _): a model picks
# it with `backend: "<name>"`, and the library is libferrite_driver_<name>.so. The crate stands
# alone (its own workspace), uses this checkout's SDK by path and its Cargo.lock (the same
# dependency versions, so it builds offline). See docs/write-a-driver.md.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <name> <folder>" >&2
  exit 2
fi
name=$1
dest=$2
if [[ ! $name =~ ^[a-z][a-z0-9_]*$ ]]; then
  echo "$0: the name '$name' must be lowercase letters, digits and _, starting with a letter" >&2
  exit 2
fi
if [[ -e $dest ]]; then
  echo "$0: $dest already exists" >&2
  exit 1
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
template=$root/drivers/template

mkdir -p "$dest/src"
# package name, the SDK's path, and a workspace of its own
sed -e "s|^name = \"ferrite-driver-template\"|name = \"ferrite-driver-$name\"|" \
    -e "s|^description = .*|description = \"The $name driver for Ferrite\"|" \
    -e "s|path = \"../sdk\"|path = \"$root/drivers/sdk\"|" \
    "$template/Cargo.toml" > "$dest/Cargo.toml"
printf '\n[workspace]\n' >> "$dest/Cargo.toml"
# the driver's and backend's name, and the error messages that carry it
sed -e "s|\"template\"|\"$name\"|g" -e "s|template: |$name: |g" \
    -e "s|(backend \`template\`)|(backend \`$name\`)|" \
    "$template/src/lib.rs" > "$dest/src/lib.rs"
cp "$root/Cargo.lock" "$dest/Cargo.lock"

echo "made $dest: driver '$name' (backend \"$name\"), library libferrite_driver_$name.so"
echo "next: edit $dest/src/lib.rs, then cargo build --release --manifest-path $dest/Cargo.toml"
