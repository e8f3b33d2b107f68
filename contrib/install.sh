#!/usr/bin/env bash
# contrib/install.sh — install (or uninstall) nsidmap from a built source tree. See --help.
#
# Everything the kernel or systemd runs gets absolute paths: /sbin/request-key runs helpers with
# PATH=/sbin:/bin:/usr/sbin:/usr/bin and HOME=/ (docs/PROTOCOLS.md §1), so a `#!/usr/bin/env node`
# helper would break wherever node lives elsewhere (nvm, /usr/local/bin).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: contrib/install.sh [options]

Install nsidmap from this (built) source tree: `npm ci && npm run build` first.

  <prefix>/dist, node_modules (production only), package.json
  <prefix>/bin/nsidmap-upcall            the request-key helper (compiled; the Node one if no C build)
  /etc/request-key.d/nsidmap.conf        rules for id_resolver and cifs.idmap keys → that helper
  <unitdir>/nsidmapd.service             systemd unit (Type=notify)
  <sbindir>/nsidmapd, <bindir>/idmapctl  wrappers that exec node with absolute paths

Options:
  --prefix DIR           where the program goes (default /usr/lib/nsidmap)
  --destdir DIR          stage everything under DIR, as for a package (default: $DESTDIR);
                         rules already present are then looked for under DIR/etc too
  --node PATH            node (>= 20) the wrappers, the unit and the fallback helper run
                         (default: the node found on PATH now, as an absolute path)
  --unitdir DIR          default /etc/systemd/system
  --bindir DIR           default /usr/bin
  --sbindir DIR          default /usr/sbin
  --disable-conflicting  rename the /etc/request-key.d/*.conf files whose rules would compete
                         with nsidmap's (nfsidmap's id_resolver.conf, cifs-utils' cifs.idmap.conf)
                         to *.conf.disabled-by-nsidmap; --uninstall renames them back
  --uninstall            remove what an install put there, put renamed rules back
  --dry-run              print what would be done, change nothing
  -h, --help             this text

Rules already present for id_resolver or cifs.idmap are reported, not changed (unless
--disable-conflicting): /sbin/request-key takes the least-wild matching line across
/etc/request-key.d/*.conf and /etc/request-key.conf, and between equally wild lines the first
one it reads — so with nfsidmap's `create id_resolver * * …` next to nsidmap's, either may answer.

Examples:
  sudo contrib/install.sh
  sudo contrib/install.sh --disable-conflicting
  contrib/install.sh --destdir /tmp/stage --dry-run
  sudo contrib/install.sh --uninstall
EOF
}

die() { echo "install.sh: error: $*" >&2; exit 1; }
warn() { echo "install.sh: WARNING: $*" >&2; }
say() { echo "install.sh: $*"; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/usr/lib/nsidmap
DEST=${DESTDIR:-}
NODE=
UNITDIR=/etc/systemd/system
BINDIR=/usr/bin
SBINDIR=/usr/sbin
DISABLE=0
UNINSTALL=0
DRY=0

while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    --prefix|--destdir|--node|--unitdir|--bindir|--sbindir)
      [ $# -ge 2 ] || die "$opt needs a value (see --help)"
      val=$2; shift 2 ;;
    --prefix=*|--destdir=*|--node=*|--unitdir=*|--bindir=*|--sbindir=*)
      val=${opt#*=}; opt=${opt%%=*}; shift ;;
    --disable-conflicting) DISABLE=1; shift; continue ;;
    --uninstall) UNINSTALL=1; shift; continue ;;
    --dry-run) DRY=1; shift; continue ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option \"$opt\" (see --help)" ;;
  esac
  case $opt in
    --prefix) PREFIX=$val ;;
    --destdir) DEST=$val ;;
    --node) NODE=$val ;;
    --unitdir) UNITDIR=$val ;;
    --bindir) BINDIR=$val ;;
    --sbindir) SBINDIR=$val ;;
  esac
done

# Paths as the installed system sees them must be absolute; a quote would break the wrappers.
for v in "$PREFIX" "$UNITDIR" "$BINDIR" "$SBINDIR"; do
  case $v in /*) ;; *) die "\"$v\" is not an absolute path" ;; esac
  case $v in *"'"*|*[[:space:]]*) die "\"$v\": paths with quotes or blanks are not supported" ;; esac
done
case $PREFIX in /|/usr|/usr/lib|/usr/local|/opt|/etc|/bin|/sbin|/lib) die "--prefix $PREFIX would mix nsidmap into a system directory: give it its own, e.g. /usr/lib/nsidmap" ;; esac
DEST=${DEST%/}
if [ -n "$DEST" ]; then
  case $DEST in /*) ;; *) DEST="$(pwd)/$DEST" ;; esac
fi

HELPER=$PREFIX/bin/nsidmap-upcall
RULE=/etc/request-key.d/nsidmap.conf
UNIT=$UNITDIR/nsidmapd.service
MANIFEST=$PREFIX/install-manifest
DISABLED_SUFFIX=.disabled-by-nsidmap
# The key types nsidmap answers, and the rule files other packages ship for them.
KEY_TYPES=(id_resolver cifs.idmap)

# ---- actions (printed instead of done with --dry-run) ------------------------------------------

run() {
  if [ "$DRY" = 1 ]; then echo "would run: $*"; else "$@"; fi
}

# write_file TARGET MODE < content: TARGET is a path on the installed system (DESTDIR is added).
write_file() {
  local target=$1 mode=$2
  if [ "$DRY" = 1 ]; then
    echo "would write $DEST$target (mode $mode):"
    sed 's/^/    | /'
    return
  fi
  mkdir -p "$(dirname "$DEST$target")"
  local tmp="$DEST$target.tmp-nsidmap.$$"
  cat >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$DEST$target"
}

# ---- request-key rules of other programs -------------------------------------------------------

RULE_FILES=()
collect_rule_files() {
  RULE_FILES=()
  local f
  for f in "$DEST"/etc/request-key.d/*.conf; do
    [ -f "$f" ] || continue
    [ "$f" = "$DEST$RULE" ] && continue
    RULE_FILES+=("$f")
  done
  [ -f "$DEST/etc/request-key.conf" ] && RULE_FILES+=("$DEST/etc/request-key.conf")
  return 0
}

# Does a rule's type field (with at most one `*`, request-key's only wildcard) match one of ours?
type_is_ours() {
  local pattern=$1 t
  for t in "${KEY_TYPES[@]}"; do
    # shellcheck disable=SC2053  # the pattern is meant to glob
    [[ $t == $pattern ]] && return 0
  done
  return 1
}

# Print `file:line: text` for every active `create` rule that would compete for our key types.
conflicts_in() {
  local file=$1 n=0 line op type
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    read -r op type _ <<<"$line" || true
    case $op in ''|'#'*) continue ;; esac
    [ "$op" = create ] || [ "$op" = '*' ] || continue
    type_is_ours "$type" && echo "${file#"$DEST"}:$n: $line"
  done <"$file"
  return 0
}

# Does the file hold active rules besides the conflicting ones? (then it is not ours to disable)
other_rules_in() {
  local file=$1 line op type
  while IFS= read -r line || [ -n "$line" ]; do
    read -r op type _ <<<"$line" || true
    case $op in ''|'#'*) continue ;; esac
    if [ "$op" = create ] || [ "$op" = '*' ]; then type_is_ours "$type" && continue; fi
    return 0
  done <"$file"
  return 1
}

check_conflicts() {
  collect_rule_files
  local f found=() c
  for f in "${RULE_FILES[@]}"; do
    while IFS= read -r c; do [ -n "$c" ] && found+=("$c"); done < <(conflicts_in "$f")
  done
  [ ${#found[@]} -eq 0 ] && return 0
  warn "other request-key rules already handle id_resolver / cifs.idmap keys:"
  for c in "${found[@]}"; do echo "    $c" >&2; done
  cat >&2 <<EOF
  /sbin/request-key reads /etc/request-key.d/*.conf and /etc/request-key.conf and takes the
  least-wild matching line; between equally wild lines (\`create id_resolver * *\` is exactly as
  wild as nsidmap's) it takes the first one it reads, and it reads /etc/request-key.d in
  directory order, which is not alphabetical. So either helper may answer, and their answers
  differ wherever the policy does.
EOF
  if [ "$DISABLE" = 0 ]; then
    echo "  Re-run with --disable-conflicting to rename those .d files to *.conf$DISABLED_SUFFIX (--uninstall restores them); lines in /etc/request-key.conf must be commented out by hand." >&2
    return 0
  fi
  for f in "${RULE_FILES[@]}"; do
    [ "$f" = "$DEST/etc/request-key.conf" ] && continue
    [ -n "$(conflicts_in "$f")" ] || continue
    if other_rules_in "$f"; then
      warn "${f#"$DEST"} also holds other rules: not renamed; comment out its id_resolver/cifs.idmap lines by hand"
      continue
    fi
    say "disabling ${f#"$DEST"} → ${f#"$DEST"}$DISABLED_SUFFIX"
    run mv -f "$f" "$f$DISABLED_SUFFIX"
    DISABLED+=("${f#"$DEST"}")
  done
  for c in "${found[@]}"; do
    case $c in /etc/request-key.conf:*) warn "/etc/request-key.conf has such lines too: comment them out by hand (that file is never renamed)"; break ;; esac
  done
}

# ---- install -----------------------------------------------------------------------------------

find_node() {
  if [ -z "$NODE" ]; then
    NODE=$(command -v node || true)
    [ -n "$NODE" ] || die "node not found on PATH: pass --node /absolute/path/to/node"
  fi
  case $NODE in /*) ;; *) NODE="$(cd "$(dirname "$NODE")" && pwd)/$(basename "$NODE")" ;; esac
  [ -x "$NODE" ] || die "--node $NODE is not executable"
  "$NODE" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
    || die "$NODE is older than Node 20"
}

# The production dependency closure of package.json, as node_modules-relative top-level package
# directories: dependencies and optionalDependencies, recursively, resolved as node does.
production_packages() {
  "$NODE" - "$SRC" <<'EOF'
const fs = require('fs');
const path = require('path');
const root = path.resolve(process.argv[2]);
const readPkg = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
const find = (name, from) => {
  for (let d = from; ; d = path.dirname(d)) {
    const c = path.join(d, 'node_modules', name);
    if (fs.existsSync(path.join(c, 'package.json'))) return c;
    if (d === root || d === path.dirname(d)) return undefined;
  }
};
const seen = new Set();
const visit = (dir) => {
  const pkg = readPkg(dir);
  const deps = { ...(pkg.optionalDependencies || {}), ...(pkg.dependencies || {}) };
  for (const name of Object.keys(deps)) {
    const at = find(name, dir);
    if (!at) {
      if (!(pkg.optionalDependencies && name in pkg.optionalDependencies)) console.error(`missing dependency ${name} of ${pkg.name}: run npm ci`), process.exit(1);
      continue;
    }
    if (seen.has(at)) continue;
    seen.add(at);
    visit(at);
  }
};
visit(root);
// Top-level directories only: a package's nested node_modules holds only its own dependencies.
const top = new Set();
for (const p of seen) {
  const rel = path.relative(path.join(root, 'node_modules'), p).split(path.sep);
  top.add(rel[0].startsWith('@') ? `${rel[0]}/${rel[1]}` : rel[0]);
}
console.log([...top].sort().join('\n'));
EOF
}

# wrapper TARGET ARGS…: a /bin/sh script that execs node with absolute paths.
wrapper() {
  local target=$1; shift
  local q=() a
  for a in "$@"; do q+=("'$a'"); done
  write_file "$target" 0755 <<EOF
#!/bin/sh
# Installed by nsidmap contrib/install.sh: node and the program by absolute path, so that it
# runs the same from a login shell, sudo, cron or systemd.
exec ${q[*]} "\$@"
EOF
}

# The helper compiled here, now, with the installed node and fallback compiled in (the C helper
# execs `<node> <prefix>/dist/keyring/upcall.js` when the daemon cannot be asked), by the same
# scripts/build-upcall.sh as `npm run build` (same flags: static PIE where libc.a exists); else the
# one `npm run build` made; else the Node helper behind a wrapper (correct, ~100 ms per upcall).
install_helper() {
  local c="$SRC/keyring/nsidmap-upcall.c" build="$SRC/scripts/build-upcall.sh" cc=${CC:-cc} fallback="$PREFIX/dist/keyring/upcall.js"
  if [ -f "$c" ] && [ -f "$build" ] && command -v "$cc" >/dev/null 2>&1; then
    # CC and CFLAGS from the environment reach the build script as they are.
    local cmd=(bash "$build" --node "$NODE" --fallback "$fallback" --out "$DEST$HELPER")
    if [ "$DRY" = 1 ]; then
      "${cmd[@]}" --dry-run
      return
    fi
    # the build script writes beside the target and renames (an upcall may be running the old one)
    if "${cmd[@]}"; then
      return
    fi
    warn "compiling $c failed: trying the helper npm run build made"
  fi
  if [ -x "$SRC/dist/keyring/nsidmap-upcall" ]; then
    warn "cannot compile the helper here (no $cc, or no keyring/nsidmap-upcall.c and scripts/build-upcall.sh): installing $SRC/dist/keyring/nsidmap-upcall as built, whose in-process fallback (used while nsidmapd is down) runs $SRC/dist/keyring/upcall.js — keep that checkout, or install with a compiler"
    run install -m 0755 "$SRC/dist/keyring/nsidmap-upcall" "$DEST$HELPER"
  elif [ -f "$SRC/dist/keyring/upcall.js" ]; then
    warn "dist/keyring/nsidmap-upcall was not compiled (no C compiler?): installing the Node helper, which takes ~100 ms per upcall instead of a few"
    wrapper "$HELPER" "$NODE" "$fallback"
  else
    die "no upcall helper in $SRC/dist/keyring: run \`npm run build\`"
  fi
}

do_install() {
  [ -f "$SRC/dist/src/daemon/main.js" ] && [ -f "$SRC/dist/src/cli/main.js" ] \
    || die "$SRC/dist is not built: run \`npm ci && npm run build\` first"
  [ -f "$SRC/keyring/request-key.d/nsidmap.conf" ] || die "rule template $SRC/keyring/request-key.d/nsidmap.conf is missing"
  [ -d "$SRC/node_modules" ] || die "$SRC/node_modules is missing: run \`npm ci\` first"
  find_node

  local rule
  rule=$(sed "s|@HELPER@|$HELPER|g" "$SRC/keyring/request-key.d/nsidmap.conf")
  if grep -q '@[A-Z_]*@' <<<"$rule"; then die "the rule template has placeholders this script does not know: $(grep -o '@[A-Z_]*@' <<<"$rule" | sort -u | tr '\n' ' ')"; fi

  local packages
  packages=$(production_packages) || die "cannot work out the production dependencies"

  DISABLED=()
  check_conflicts

  local P="$DEST$PREFIX"
  say "installing into ${DEST:-/} (prefix $PREFIX, node $NODE)"
  run rm -rf "$P/dist" "$P/node_modules" "$P/schema"
  run mkdir -p "$P/bin" "$P/dist" "$P/node_modules" "$P/schema"
  # `dir/.`: the contents, even where the source directory is a symlink (never copy the link)
  run cp -a "$SRC/dist/." "$P/dist/"
  # the cache's SQL migrations (src/cache/migrations.ts finds schema/ above dist/ at run time)
  [ -d "$SRC/schema" ] && run cp -a "$SRC/schema/." "$P/schema/"
  if [ "$DRY" = 1 ]; then
    echo "would copy $(wc -l <<<"$packages") production packages from $SRC/node_modules to $P/node_modules:" $packages
  else
    local pkg
    while IFS= read -r pkg; do
      [ -n "$pkg" ] || continue
      mkdir -p "$P/node_modules/$pkg"
      cp -a "$SRC/node_modules/$pkg/." "$P/node_modules/$pkg/"
    done <<<"$packages"
  fi
  run install -m 0644 "$SRC/package.json" "$P/package.json"
  [ -f "$SRC/README.md" ] && run install -m 0644 "$SRC/README.md" "$P/README.md"

  # The copy `npm run build` made has the checkout's paths compiled in: not for installing.
  run rm -f "$P/dist/keyring/nsidmap-upcall"
  install_helper

  # Helper first, rule second: a rule must never point at a helper that is not there yet.
  write_file "$RULE" 0644 <<<"$rule"
  sed -e "s|@NODE@|$NODE|g" -e "s|@PREFIX@|$PREFIX|g" "$SRC/contrib/systemd/nsidmapd.service" | write_file "$UNIT" 0644
  wrapper "$SBINDIR/nsidmapd" "$NODE" --optimize-for-size "$PREFIX/dist/src/daemon/main.js"
  wrapper "$BINDIR/idmapctl" "$NODE" "$PREFIX/dist/src/cli/main.js"

  {
    echo "# nsidmap install manifest: what --uninstall removes (paths without DESTDIR)"
    echo "prefix $PREFIX"
    echo "file $RULE"
    echo "file $UNIT"
    echo "file $SBINDIR/nsidmapd"
    echo "file $BINDIR/idmapctl"
    local d
    for d in "${DISABLED[@]}"; do echo "disabled $d"; done
  } | write_file "$MANIFEST" 0644

  if [ -z "$DEST" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    run systemctl daemon-reload
  fi
  say "done. Next: write /etc/nsidmap/policy.yaml (examples: $SRC/policies), then"
  say "  systemctl enable --now nsidmapd && idmapctl status"
}

# ---- uninstall ---------------------------------------------------------------------------------

# The programs a rule file's active lines run exist (on the installed system)?
programs_exist() {
  local file=$1 line op type desc callout prog
  while IFS= read -r line || [ -n "$line" ]; do
    read -r op type desc callout prog _ <<<"$line" || true
    case $op in ''|'#'*) continue ;; esac
    prog=${prog#|}
    [ -n "$prog" ] && [ ! -x "$DEST$prog" ] && return 1
  done <"$file"
  return 0
}

do_uninstall() {
  local P="$DEST$PREFIX" files=() line kind path
  if [ -f "$DEST$MANIFEST" ]; then
    while IFS= read -r line; do
      read -r kind path <<<"$line" || true
      [ "$kind" = file ] && files+=("$path")
    done <"$DEST$MANIFEST"
  else
    warn "no $MANIFEST: removing the default locations"
    files=("$RULE" "$UNIT" "$SBINDIR/nsidmapd" "$BINDIR/idmapctl")
  fi
  if [ -z "$DEST" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    run systemctl disable --now nsidmapd.service 2>/dev/null || true
  fi
  # The rule first: from here on nothing sends upcalls to a helper that is about to go.
  local f
  for f in "${files[@]}"; do
    if [ -e "$DEST$f" ]; then say "removing $f"; run rm -f "$DEST$f"; fi
  done
  # Put back what --disable-conflicting renamed (the manifest may be gone: go by the suffix).
  local d orig
  for d in "$DEST"/etc/request-key.d/*.conf"$DISABLED_SUFFIX"; do
    [ -f "$d" ] || continue
    orig=${d%"$DISABLED_SUFFIX"}
    if [ -e "$orig" ]; then
      warn "${orig#"$DEST"} exists again (reinstalled?): leaving ${d#"$DEST"} as it is"
    elif ! programs_exist "$d"; then
      warn "${d#"$DEST"} runs a program that is not installed any more: left disabled, since a rule without its helper breaks those lookups"
    else
      say "restoring ${orig#"$DEST"}"
      run mv "$d" "$orig"
    fi
  done
  local x
  for x in dist node_modules schema; do [ -e "$P/$x" ] && run rm -rf "$P/$x"; done
  for x in package.json README.md bin/nsidmap-upcall install-manifest; do [ -e "$P/$x" ] && run rm -f "$P/$x"; done
  [ -d "$P/bin" ] && run rmdir "$P/bin" 2>/dev/null || true
  [ -d "$P" ] && run rmdir "$P" 2>/dev/null || true
  # Anything left that still sends our key types to the removed helper would fail every lookup.
  collect_rule_files
  for f in "${RULE_FILES[@]}"; do
    if grep -qsF "$HELPER" "$f"; then warn "${f#"$DEST"} still runs $HELPER, which is gone: remove that rule"; fi
  done
  if [ -z "$DEST" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    run systemctl daemon-reload
  fi
  say "uninstalled"
}

if [ "$UNINSTALL" = 1 ]; then do_uninstall; else do_install; fi
