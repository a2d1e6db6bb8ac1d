# Sourced by the project's scripts: hnf_install_packages TAG PACKAGE... installs the Debian
# packages that are not installed yet (apt-get update only when something is missing), as root
# or through sudo. HNF_SKIP_APT=1 skips it. TAG prefixes the messages.
hnf_install_packages() {
  local tag=$1
  shift
  [[ "${HNF_SKIP_APT:-0}" == 1 ]] && return 0
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "$tag: need root (or sudo) to install: ${missing[*]}" >&2; exit 3; }
    sudo=(sudo)
  fi
  echo "$tag: installing ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
