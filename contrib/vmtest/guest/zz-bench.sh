m() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); printf '%-70s %6.3fs\n' "$*" "$(awk "BEGIN{print $e-$s}")"; }
for i in 1 2 3 4 5 6 7 8; do
m node $ROOT/dist/src/cli/main.js --version
done
free -m
