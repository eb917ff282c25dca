# Sourced by the experiment scripts: run from the repository root with the data folder set,
# a fresh release build in $anu, and the output folders in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ANU_DATA="${ANU_DATA:-../shared/data}"
anu=./target/release/anu
cargo build --release
mkdir -p runs results
