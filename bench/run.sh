#!/bin/sh
# run.sh - runs the benchmarks that `make bench` built and writes
#   $O/bench/summary.json  flat JSON: size.*, speed.*, device.* (numbers)
#   $O/bench/report.md     the tables, the targets met or missed
#   $O/bench/sizes.svg     bytes per update in every encoding (gnuplot)
#   $O/bench/speed.svg     ns and instructions per message (gnuplot)
# and then runs bench/gateway.sh (gateway.*, wire.*), bench/coap.sh
# (wire.coap*, coap.*) and bench/queue.sh (queue.*): see there.
# It builds nothing. Usage: bench/run.sh [O] [VECTORS]
#
# Corpora: tests/vectors/typical.jsonl (200 updates made with the SDK)
# and 5000 generated ones (bench-gen_corpus --seed 2); zstd dictionaries
# are trained on 5000 others (--seed 1). Timings: medians of 5 runs
# (bench-codec); instruction counts: callgrind over 3 untimed passes.
set -eu

O=${1:-build}
V=${2:-tests/vectors}
B=$O/bench
N_GEN=5000
mkdir -p "$B"
start=$(date +%s)

say() { printf '\n== %s\n' "$*"; }

# ==== Corpora ====
say "corpora: $N_GEN training + $N_GEN test updates (seeded)"
"$O/bench-gen_corpus" --seed 1 --count $N_GEN --out "$B/train.jsonl"
"$O/bench-gen_corpus" --seed 2 --count $N_GEN --out "$B/test.jsonl"

# ==== Sizes ====
say "sizes"
"$O/bench-sizes" --train "$B/train.jsonl" \
	--corpus "typical=$V/typical.jsonl" --corpus "generated=$B/test.jsonl" \
	--json "$B/sizes.json" --md "$B/sizes.md" --dat "$B/sizes.dat"

# ==== Speed ====
say "speed (bench-codec)"
"$O/bench-codec" --vectors "$V" --json "$B/codec.json" | tee "$B/codec.txt"

say "instruction counts (callgrind, 3 passes)"
CG=$B/callgrind.json
if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
	valgrind --tool=callgrind --callgrind-out-file="$B/callgrind.out" \
		"$O/bench-codec" --vectors "$V" --callgrind 3 \
		> "$B/callgrind.items" 2> "$B/callgrind.log"
	callgrind_annotate --inclusive=yes --threshold=100 "$B/callgrind.out" \
		2>/dev/null | sed -n -E 's/^ *([0-9,]+) .*:(pass_[a-z_]+) .*/\2 \1/p' |
		tr -d , | awk '!seen[$1]++' > "$B/callgrind.ir"
	# pass function -> summary key
	awk '
	BEGIN {
		k["pass_encode"] = "encode"; k["pass_decode"] = "decode"
		k["pass_pb_to_json"] = "pb_to_json"
		k["pass_cjson"] = "cjson_pb_to_json"
		k["pass_json_to_pb"] = "json_to_pb"
		k["pass_json_parse"] = "json_parse"
		k["pass_session_parse"] = "session_parse"
		k["pass_pc_pack"] = "protobuf_c_pack"
		k["pass_pc_unpack"] = "protobuf_c_unpack"
		k["pass_npb_encode"] = "nanopb_encode"
		k["pass_npb_decode"] = "nanopb_decode"
		k["pass_num_format"] = "double_format"
	}
	FILENAME ~ /items$/ { items[$2] = $3; next }
	($1 in k) && ($1 in items) {
		v = $2 / items[$1]; ir[k[$1]] = v
		printf "  \"speed.ir_%s\": %.0f,\n", k[$1], v
	}
	END {
		if (ir["pb_to_json"] > 0)
			printf "  \"speed.ir_pb_to_json_speedup_vs_cjson\": %.3f,\n",
				ir["cjson_pb_to_json"] / ir["pb_to_json"]
	}' "$B/callgrind.items" "$B/callgrind.ir" > "$CG"
	cat "$CG"
else
	echo "valgrind not installed: no instruction counts"
	: > "$CG"
fi

# ==== Device footprint ====
say "device footprint"
DV=$B/device.json
D=$O/device
: > "$DV"
# text and data of a size(1) output file
td() { awk 'NR == 2 { print $1, $2 }' "$1"; }
# Sums the sizes (nm -S) of the symbols of $2 that are not in $3, by kind.
breakdown() {
	# one line per address: aliases (__aeabi_dadd = __adddf3) count once
	"$1" --size-sort -S -t d "$2" | awk '!seen[$1]++ { print $NF, $2 + 0 }' > "$B/syms.a"
	"$1" --size-sort -S -t d "$3" | awk '{ print $NF }' | sort -u > "$B/syms.b"
	awk 'NR == FNR { base[$1] = 1; next }
	!($1 in base) {
		if ($1 ~ /^__(aeabi|.*[ds]f[0-9]|.*di[0-9]|.*fix|.*float|.*(cmp|eq|ne|lt|le|gt|ge|un)df|.*extend|.*trunc|clz|udivmod|divmod)/)
			soft += $2
		else if ($1 ~ /^_*(mem|str|floor|ceil|l?l?round|trunc|fabs|malloc|free|sbrk|_?malloc|_?free|_?sbrk|errno|impure|sf|global_impure|lock)/)
			other += $2
		else
			codec += $2
	}
	END { printf "%d %d %d\n", codec, soft, other }' "$B/syms.b" "$B/syms.a"
}
# Bytes of section $2 in size -A output $1.
sect() { awk -v s="$2" '$1 == s { print $2 + 0; f = 1 } END { if (!f) print 0 }' "$1"; }
if [ -f "$D/m4-sw.size" ] && [ -f "$D/m4-base.size" ]; then
	set -- $(td "$D/m4-sw.size") $(td "$D/m4-base.size")
	m4_text=$(($1 - $3)); m4_data=$(($2 - $4))
	arm-none-eabi-size -A "$D/m4-sw.elf" > "$B/m4-sw.sections"
	arm-none-eabi-size -A "$D/m4-base.elf" > "$B/m4-base.sections"
	m4_code=$(( $(sect "$B/m4-sw.sections" .text) - $(sect "$B/m4-base.sections" .text) ))
	m4_ro=$(( $(sect "$B/m4-sw.sections" .rodata) - $(sect "$B/m4-base.sections" .rodata) ))
	# newlib's atexit refers to malloc weakly: once codec/block.c's
	# sw__alloc (itself dropped) pulls malloc into the link, it stays.
	m4_heap=$(arm-none-eabi-nm -S -t d "$D/m4-sw.elf" | awk '$4 ~ /^_*(malloc|free|_?malloc_r|_?free_r|_?sbrk_r|sbrk|__malloc)/ && !s[$1]++ { n += $2 } END { print n + 0 }')
	set -- $(breakdown arm-none-eabi-nm "$D/m4-sw.elf" "$D/m4-base.elf")
	cat >> "$DV" <<EOF
  "device.encode_code_bytes_cortex_m4": $m4_code,
  "device.encode_rodata_bytes_cortex_m4": $m4_ro,
  "device.encode_heap_code_bytes_cortex_m4": $m4_heap,
  "device.encode_text_bytes_cortex_m4": $m4_text,
  "device.encode_data_bytes_cortex_m4": $m4_data,
  "device.encode_text_data_bytes_cortex_m4": $((m4_text + m4_data)),
  "device.encode_codec_symbols_bytes_cortex_m4": $1,
  "device.encode_softfloat_symbols_bytes_cortex_m4": $2,
  "device.encode_libc_symbols_bytes_cortex_m4": $3,
EOF
	# The lean device encoder (sw_device.h), same message, same bytes:
	# integers only, costs as scaled integers, costs as doubles.
	for v in dev:integers devdec:decimal_billing devnum:double_billing; do
		f="$D/m4-${v%%:*}.size"
		[ -f "$f" ] || continue
		set -- $(td "$f") $(td "$D/m4-base.size")
		echo "  \"device.lean_${v#*:}_text_data_bytes_cortex_m4\": $(($1 + $2 - $3 - $4))," >> "$DV"
	done
	echo "Cortex-M4 largest symbols of the encode path:"
	arm-none-eabi-nm --size-sort -S -t d "$D/m4-sw.elf" | tail -12 | awk '{ printf "  %6d %s\n", $2, $4 }'
else
	echo "no Cortex-M4 build (gcc-arm-none-eabi missing)"
fi
if [ -f "$D/x86-sw.size" ] && [ -f "$D/x86-base.size" ]; then
	set -- $(td "$D/x86-sw.size") $(td "$D/x86-base.size")
	echo "  \"device.encode_text_data_bytes_x86_64\": $(($1 + $2 - $3 - $4))," >> "$DV"
	if [ -f "$D/x86-nanopb.size" ]; then
		b=$(($3 + $4))
		set -- $(td "$D/x86-nanopb.size")
		echo "  \"device.nanopb_encode_text_data_bytes_x86_64\": $(($1 + $2 - b))," >> "$DV"
	fi
fi
cat "$DV"

# ==== summary.json ====
# Flat objects merged: sizes (all), codec (its speed.* and check.*: the
# size.* of sizes.json are the same corpus and more), callgrind, device.
body() { sed -e '1d' -e '$d' -e 's/,$//' "$@"; }
{
	body "$B/sizes.json"
	body "$B/codec.json" | grep -v '"size\.' | grep -v '"messages"'
	[ -s "$CG" ] && sed 's/,$//' "$CG"
	[ -s "$DV" ] && sed 's/,$//' "$DV"
	echo "  \"bench.seconds\": $(( $(date +%s) - start ))"
} | awk 'NR > 1 { print prev "," } { prev = $0 } END { print prev }' |
	{ echo "{"; cat; echo "}"; } > "$B/summary.json"

# A value of summary.json ("" if absent).
val() { sed -n "s/^ *\"$1\": *\([^,]*\),*$/\1/p" "$B/summary.json"; }
# awk arithmetic and formatting of summary values.
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# ==== Plots ====
say "plots"
{
	echo "# operation ns_per_message instructions_per_message"
	printf '"encode (sw)" %s %s\n' "$(val speed.encode_ns)" "$(val speed.ir_encode)"
	printf '"decode (sw)" %s %s\n' "$(val speed.decode_ns)" "$(val speed.ir_decode)"
	printf '"pb -> JSON (sw)" %s %s\n' "$(val speed.pb_to_json_ns)" "$(val speed.ir_pb_to_json)"
	printf '"pb -> JSON (protobuf-c + cJSON)" %s %s\n' "$(val speed.cjson_pb_to_json_ns)" "$(val speed.ir_cjson_pb_to_json)"
	printf '"JSON -> pb (sw)" %s %s\n' "$(val speed.json_to_pb_ns)" "$(val speed.ir_json_to_pb)"
	printf '"protobuf-c pack" %s %s\n' "$(val speed.protobuf_c_pack_ns)" "$(val speed.ir_protobuf_c_pack)"
	printf '"protobuf-c unpack" %s %s\n' "$(val speed.protobuf_c_unpack_ns)" "$(val speed.ir_protobuf_c_unpack)"
	if [ -n "$(val speed.nanopb_encode_ns)" ]; then
		printf '"nanopb encode" %s %s\n' "$(val speed.nanopb_encode_ns)" "$(val speed.ir_nanopb_encode)"
		printf '"nanopb decode" %s %s\n' "$(val speed.nanopb_decode_ns)" "$(val speed.ir_nanopb_decode)"
	fi
} | sed 's/ $/ 0/; s/  / 0 /' > "$B/speed.dat"
if command -v gnuplot >/dev/null; then
	gnuplot <<EOF
set terminal svg size 1000,560 dynamic font 'sans,12' noenhanced
set output '$B/sizes.svg'
set title 'Bytes per update (mean), each message on its own'
set ylabel 'bytes'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top center horizontal
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set xtics rotate by -30 left
set bmargin 9
plot '$B/sizes.dat' using 2:xtic(1) title 'typical.jsonl (SDK, 200)' lc rgb '#4472c4', \
	'' using 5 title 'generated ($N_GEN)' lc rgb '#ed7d31', \
	'' using (\$0 - 0.17):2:(sprintf('%.0f', \$2)) with labels offset 0,0.7 font ',9' notitle, \
	'' using (\$0 + 0.17):5:(sprintf('%.0f', \$5)) with labels offset 0,0.7 font ',9' notitle
EOF
	gnuplot <<EOF
set terminal svg size 1000,900 dynamic font 'sans,12' noenhanced
set output '$B/speed.svg'
set multiplot layout 2,1 title 'Per message, typical.jsonl (lower is better)'
set style data histograms
set style fill solid 0.85 border -1
set boxwidth 0.7
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.1, 0
set xtics rotate by -25 left
set bmargin 7
set ylabel 'ns (median of 5 runs)'
plot '$B/speed.dat' using 2:xtic(1) notitle lc rgb '#4472c4', \
	'' using 0:2:(sprintf('%.0f', \$2)) with labels offset 0,0.7 font ',9' notitle
set ylabel 'instructions (callgrind)'
plot '$B/speed.dat' using 3:xtic(1) notitle lc rgb '#70ad47', \
	'' using 0:3:(sprintf('%.0f', \$3)) with labels offset 0,0.7 font ',9' notitle
unset multiplot
EOF
	echo "$B/sizes.svg $B/speed.svg"
else
	echo "gnuplot not installed: no plots"
fi

# ==== report.md ====
# "met" / "MISSED" for a condition on summary values.
verdict() { awk "BEGIN { print ($1) ? \"met\" : \"MISSED\" }"; }
ratio=$(val size.ratio)
pb=$(val size.protobuf_mean); zd=$(val size.json_zstd_dict_mean)
sp=$(val speed.pb_to_json_speedup_vs_cjson)
spi=$(val speed.ir_pb_to_json_speedup_vs_cjson)
dbl=$(val speed.double_format_ns); dblr=$(val speed.double_format_random_ns)
m4=$(val device.encode_text_data_bytes_cortex_m4)
{
	echo "# sessionwire benchmark"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) CPUs," \
		"$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)." \
		"Plots: \`$B/sizes.svg\`, \`$B/speed.svg\`; numbers: \`$B/summary.json\`."
	echo
	echo "## Sizes (bytes per update)"
	echo
	echo "Each message compressed on its own; zstd dictionaries of" \
		"$(val size.dict_json_bytes) B (JSON) and $(val size.dict_protobuf_bytes) B" \
		"(sessionwire) trained on $(val size.train_messages) generated updates" \
		"apart from both test sets; zstd frames without checksum or dictionary id." \
		"sessionwire + dictionary: 1 flag byte, compressed only when smaller" \
		"($(val size.protobuf_zstd_dict_used) of $(val size.messages) typical updates)."
	cat "$B/sizes.md"
	echo
	echo "## Speed (typical.jsonl, per message)"
	echo
	echo "| operation | ns (median of 5 runs) | instructions (callgrind) |"
	echo "| --- | ---: | ---: |"
	sed -n 's/^"\(.*\)" \([^ ]*\) \([^ ]*\)$/| \1 | \2 | \3 |/p' "$B/speed.dat"
	echo "| number formatting, per double (corpus / random) | $dbl / $dblr | $(val speed.ir_double_format) (corpus) |"
	echo
	echo "## Device footprint (encode path: sw_update_set_* + sw_pb_encode)"
	echo
	if [ -n "$m4" ]; then
		echo "Cortex-M4, arm-none-eabi-gcc -Os, --gc-sections, newlib nano;" \
			"the program minus the same program without the encoder:" \
			"text $(val device.encode_text_bytes_cortex_m4) B + data" \
			"$(val device.encode_data_bytes_cortex_m4) B = **$m4 B**." \
			"Of the new symbols: codec $(val device.encode_codec_symbols_bytes_cortex_m4) B," \
			"soft-float double routines (libgcc) $(val device.encode_softfloat_symbols_bytes_cortex_m4) B," \
			"libc/libm $(val device.encode_libc_symbols_bytes_cortex_m4) B," \
			"of which $(val device.encode_heap_code_bytes_cortex_m4) B are" \
			"malloc/free, kept only because newlib's atexit refers to malloc" \
			"weakly and codec/block.c (sw__limits' file) also calls malloc" \
			"(stdio is dropped). By section: code (.text)" \
			"$(val device.encode_code_bytes_cortex_m4) B, constants (.rodata:" \
			"field tables, field names and error messages)" \
			"$(val device.encode_rodata_bytes_cortex_m4) B."
	fi
	if [ -n "$(val device.nanopb_encode_text_data_bytes_x86_64)" ]; then
		echo "On x86-64 (host cc -Os, --gc-sections; Debian ships nanopb" \
			"only as an x86-64 library, no sources to cross-compile):" \
			"sessionwire $(val device.encode_text_data_bytes_x86_64) B," \
			"nanopb $(val device.nanopb_encode_text_data_bytes_x86_64) B" \
			"for the same message."
	fi
	echo
	echo "## Targets"
	echo
	echo "| target | measured | |"
	echo "| --- | --- | --- |"
	echo "| size.ratio <= 0.25 (aim 0.21) | $ratio | $(verdict "$ratio <= 0.25"), aim 0.21 $(verdict "$ratio <= 0.21") |"
	echo "| sessionwire smaller than JSON + zstd dictionary | $pb B vs $zd B | $(verdict "$pb < $zd") |"
	echo "| pb -> JSON >= 6x faster than the cJSON path | ${sp}x in ns, ${spi:-?}x in instructions | $(verdict "$sp >= 6") in ns, $(verdict "0${spi} >= 6") in instructions |"
	echo "| <= 100 ns per double | $dbl ns on the corpus's non-integral numbers ($dblr ns on random bit patterns, which need 17 digits) | $(verdict "$dbl <= 100") |"
	[ -n "$m4" ] && echo "| device encode path <= 4 KiB on Cortex-M4: sw_update + sw_pb_encode | $m4 B | $(verdict "$m4 <= 4096") |"
	lean=$(val device.lean_decimal_billing_text_data_bytes_cortex_m4)
	[ -n "$lean" ] && [ "$lean" != null ] && echo "| device encode path <= 4 KiB on Cortex-M4: lean sw_device.h (integers $(val device.lean_integers_text_data_bytes_cortex_m4) B; costs as decimals) | $lean B | $(verdict "$lean <= 4096") |"
	echo
	echo "Run-to-run spread and checks: see \`$B/codec.txt\`. make bench took" \
		"$(val bench.seconds) s (from bench/run.sh's start)."
} > "$B/report.md"

say "report: $B/report.md"
cat "$B/report.md"

# ==== Gateway under load, bytes on the wire (bench/gateway.sh) ====
# It adds its gateway.* and wire.* keys to summary.json and its section to
# report.md.
if [ -x "$O/session-gateway" ] && [ -x "$O/fake-upstream" ] && [ -x "$O/bench-wire" ]; then
	bench/gateway.sh "$O" "$V"
	# CoAP: bytes from captured packets, updates/s next to HTTP's
	if [ -x "$O/bench-coap" ]; then
		bench/coap.sh "$O" "$V"
	fi
	# --queue on a 3-node cluster: accepted updates/s against direct
	# mode, publish-to-ack time, drain rate (queue.* keys)
	if command -v nats-server >/dev/null; then
		say "the queue (bench/queue.sh)"
		bench/queue.sh "$O"
	fi
else
	say "gateway: session-gateway, fake-upstream or bench-wire not built: skipped"
fi
