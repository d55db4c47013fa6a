#!/bin/sh
# Put Debian's chromium and chromium-driver into DEST (default .venv/chromium) without
# changing the system: apt's package lists and downloads are kept under DEST, the
# packages apt would install or upgrade are extracted with `dpkg -x` into DEST/root
# (nothing is configured, no maintainer script runs), and DEST/bin holds `chromium` and
# `chromedriver` wrappers that find the extracted libraries through LD_LIBRARY_PATH.
# Used by `make test`; needs apt-get and dpkg (Debian, Ubuntu), not root.
set -eu
DEST=$(mkdir -p "${1:-.venv/chromium}" && cd "${1:-.venv/chromium}" && pwd)
command -v apt-get >/dev/null && command -v dpkg >/dev/null || {
  echo "no apt-get/dpkg here: put chromium and chromedriver on PATH for the explorer test" >&2
  exit 1; }
rm -rf "$DEST/root" "$DEST/debs" "$DEST/bin"
mkdir -p "$DEST/lists/partial" "$DEST/cache/archives/partial" "$DEST/debs" "$DEST/root" "$DEST/bin"
APT="apt-get -q -o Dir::State::Lists=$DEST/lists -o Dir::Cache=$DEST/cache
     -o Debug::NoLocking=1 -o APT::Sandbox::User=$(id -un)"
echo "== apt-get update (lists under $DEST/lists)"
$APT update
# What `apt-get install` would install or upgrade on this system, simulated (-s changes
# nothing). The C library stays the system's: a newer libc6 cannot be loaded by the
# system's dynamic loader.
$APT -s install --no-install-recommends chromium chromium-driver >"$DEST/plan.txt"
PKGS=$(awk '/^Inst /{print $2}' "$DEST/plan.txt" | grep -vx 'libc6\|libc-bin\|libc-l10n\|locales' || true)
[ -n "$PKGS" ] || { echo "apt plans nothing for chromium; see $DEST/plan.txt" >&2; exit 1; }
echo "== downloading and extracting:" $PKGS
(cd "$DEST/debs" && $APT download $PKGS)
for deb in "$DEST"/debs/*.deb; do dpkg -x "$deb" "$DEST/root"; done
rm -rf "$DEST/debs"
LIBS=$(find "$DEST/root" -name '*.so*' -printf '%h\n' | sort -u | paste -sd: -)
FONTS=""
[ -f /etc/fonts/fonts.conf ] || [ ! -f "$DEST/root/etc/fonts/fonts.conf" ] \
  || FONTS="export FONTCONFIG_FILE=\"$DEST/root/etc/fonts/fonts.conf\""
for tool in chromium chromedriver; do
  real="$DEST/root/usr/lib/chromium/$tool"
  [ -x "$real" ] || { echo "no $real after extraction" >&2; exit 1; }
  cat >"$DEST/bin/$tool" <<EOF
#!/bin/sh
# logitlab's own $tool, extracted from Debian's packages by tools/chromium-into-venv.sh
export LD_LIBRARY_PATH="$LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
$FONTS
exec "$real" "\$@"
EOF
  chmod +x "$DEST/bin/$tool"
done
"$DEST/bin/chromedriver" --version
"$DEST/bin/chromium" --headless --no-sandbox --disable-gpu --dump-dom 'data:text/html,<p>ok</p>' \
  2>/dev/null | grep -q '<p>ok</p>' || { echo "the extracted chromium does not start" >&2; exit 1; }
echo "== chromium and chromedriver are in $DEST/bin"
