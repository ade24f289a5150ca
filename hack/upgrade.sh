#!/usr/bin/env bash
# Builds what `make test-upgrade` upgrades from and to, as releases for this
# machine's platform, and imports their images into the one-node cluster:
#
#   bin/upgrade/previous   the previous release (UPGRADE_FROM), built by its
#                          own Makefile in a git worktree of its commit
#   bin/upgrade/candidate  this commit, as the release it would become
#
# UPGRADE_FROM is a version (vX.Y.Z) or a commit. By default it is the
# newest version CHANGELOG.md has a section for whose commit is not HEAD;
# a version's commit is its tag, or, in a clone without tags, the commit
# that added its section. It prints the shell assignments the test reads.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "upgrade: $*" >&2; exit 1; }

# commit_of prints the commit of version $1 (X.Y.Z, no v), or nothing.
commit_of() {
  git rev-parse -q --verify "refs/tags/v$1^{commit}" ||
    git log --format=%H -S"## [$1]" -- CHANGELOG.md | tail -1
}

# previous prints "vX.Y.Z COMMIT" of the newest release before HEAD.
previous() {
  local head v c
  head=$(git rev-parse HEAD)
  for v in $(sed -n 's/^## \[\([0-9][^]]*\)\].*/\1/p' CHANGELOG.md); do
    c=$(commit_of "$v")
    [[ -n "$c" ]] || die "CHANGELOG.md has a section for $v, but no tag v$v nor a commit that added it"
    if [[ "$c" != "$head" ]]; then
      echo "v$v $c"
      return
    fi
  done
  die "CHANGELOG.md names no release before HEAD; give UPGRADE_FROM=<version or commit>"
}

# candidate_version is HEAD's tag when it is a release, else the next minor
# version after $1 as a pre-release of this commit: v0.3.0-dev.g1a2b3c4.
candidate_version() {
  local tag major minor
  if tag=$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null); then
    echo "$tag"
    return
  fi
  IFS=. read -r major minor _ <<<"${1#v}"
  echo "v${major}.$((minor + 1)).0-dev.g$(git rev-parse --short=12 HEAD)"
}

if [[ "${UPGRADE_FROM:-}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  from_version=${UPGRADE_FROM}
  from_commit=$(commit_of "${UPGRADE_FROM#v}")
  [[ -n "$from_commit" ]] || die "UPGRADE_FROM=${UPGRADE_FROM}: no tag, and CHANGELOG.md never had its section"
elif [[ -n "${UPGRADE_FROM:-}" ]]; then
  from_commit=$(git rev-parse -q --verify "${UPGRADE_FROM}^{commit}") || die "UPGRADE_FROM=${UPGRADE_FROM} is neither a version nor a commit"
  from_version="v0.0.0-dev.g$(git rev-parse --short=12 "$from_commit")"
else
  read -r from_version from_commit < <(previous)
fi
to_version=$(candidate_version "${from_version%%-*}")
arch=$(go env GOARCH)
out=bin/upgrade
rm -rf "$out" && mkdir -p "$out"

# The previous release, by its own Makefile, so what it shipped is what is
# installed (its chart, manifests and image, as its users have them).
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"' EXIT
git worktree add --detach "$tree" "$from_commit" >&2
echo "upgrade: building ${from_version} (${from_commit:0:12}) in $tree" >&2
make -C "$tree" --no-print-directory release VERSION="$from_version" REGISTRY=quotaops.local/previous \
  DIST="$PWD/$out/previous" PLATFORMS="$arch" PLUGIN_PLATFORMS="linux/$arch" >&2

echo "upgrade: building ${to_version} from this tree" >&2
make --no-print-directory release VERSION="$to_version" REGISTRY=quotaops.local/candidate \
  DIST="$out/candidate" PLATFORMS="$arch" PLUGIN_PLATFORMS="linux/$arch" >&2

for d in previous candidate; do
  (cd "$out/$d" && sha256sum -c --quiet SHA256SUMS) >&2 || die "$out/$d: SHA256SUMS does not match"
  bash hack/cluster.sh load "$out/$d"/quota-operator-*.oci.tar
done

cat <<EOF
QUOTA_PREVIOUS_VERSION=${from_version}
QUOTA_PREVIOUS_DIST=$PWD/$out/previous
QUOTA_CANDIDATE_VERSION=${to_version}
QUOTA_CANDIDATE_DIST=$PWD/$out/candidate
EOF
