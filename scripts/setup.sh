# Sourced by the scripts in reproduce/ and speed/: moves to the repository root, sets the data
# folder ($ANU_DATA, default ../shared/data), builds anu in release mode ($anu) and makes the
# output folders runs/ (single runs, trained models) and results/ (tables, figures).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ANU_DATA="${ANU_DATA:-../shared/data}"
anu=./target/release/anu
cargo build --release
mkdir -p runs results
