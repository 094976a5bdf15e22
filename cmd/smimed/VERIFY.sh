#!/usr/bin/env bash
# VERIFY.sh: checks this evidence export of smimed on its own, with
# sha256sum, openssl and bash builtins only. Run it in the export's
# directory: bash VERIFY.sh. It prints OK, or names each file that fails,
# and exits 1 then. docs/evidence.md of smimed explains what it checks:
#
#  1. every messages/ID.eml has the SHA-256 its record says
#     (records/ID.json, "plaintext_sha256") and manifest.csv lists;
#  2. the record's chain hash is SHA-256("smimed archive record v1\n" ||
#     previous hash || ID as 8 bytes big-endian || records/ID.json), as
#     proofs/ID.proof says;
#  3. the proof's Merkle path leads from leaf SHA-256(0x00 || hash) by
#     nodes SHA-256(0x01 || left || right) to the root of the seal it
#     names, which seals/SEAL.txt holds;
#  4. each seals/SEAL.TSA.tsr is an RFC 3161 timestamp of seals/SEAL.txt
#     by a TSA whose certificate chains to tsa/ca.pem, judged at the
#     timestamp's own time (openssl ts -verify -attime); at least REQUIRE
#     of them per seal.
# Whether tsa/ca.pem is the TSA you trust is yours to decide: compare its
# fingerprint, printed at the end, with the one the TSA publishes.
set -u
REQUIRE=@REQUIRE@
case $0 in */*) cd "${0%/*}" || exit 1 ;; esac
fails=0
fail() { printf 'FAILED: %s\n' "$*"; fails=$((fails + 1)); }

# hexbin HEX: the bytes HEX stands for.
hexbin() {
	local h=$1 out= i
	for ((i = 0; i < ${#h}; i += 2)); do out+="\\x${h:i:2}"; done
	printf "$out"
}
# sha: SHA-256 of standard input, in hex.
sha() { local h _; read -r h _ < <(sha256sum); printf '%s' "$h"; }
ishex() { [[ $1 =~ ^[0-9a-f]{64}$ ]]; }

# epoch "Mon DD HH:MM:SS YYYY": seconds since 1970 (UTC).
epoch() {
	local mon=$1 d=$((10#$2)) hms=${3%%.*} y=$((10#$4)) m H M S
	case $mon in
	Jan) m=1 ;; Feb) m=2 ;; Mar) m=3 ;; Apr) m=4 ;; May) m=5 ;; Jun) m=6 ;;
	Jul) m=7 ;; Aug) m=8 ;; Sep) m=9 ;; Oct) m=10 ;; Nov) m=11 ;; Dec) m=12 ;;
	*) return 1 ;;
	esac
	IFS=: read -r H M S <<<"$hms"
	((y -= m <= 2))
	local era=$(((y >= 0 ? y : y - 399) / 400))
	local yoe=$((y - era * 400))
	local doy=$(((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1))
	local doe=$((yoe * 365 + yoe / 4 - yoe / 100 + doy))
	printf '%d' $(((era * 146097 + doe - 719468) * 86400 + 10#$H * 3600 + 10#$M * 60 + 10#$S))
}

# The manifest's record and SHA-256 columns.
declare -A listed
if [[ -f manifest.csv ]]; then
	while IFS=, read -r rec digest _; do
		[[ $rec =~ ^[0-9]+$ ]] && listed[$rec]=$digest
	done <manifest.csv
else
	fail "manifest.csv missing"
fi

declare -A sealroot
checkseal() {
	local seal=$1 stmt=seals/$1.txt good=0 tsr name line at out
	[[ -n ${sealroot[$seal]+x} ]] && return
	sealroot[$seal]=
	if [[ ! -f $stmt ]]; then
		fail "$stmt missing"
		return
	fi
	while read -r k v _; do [[ $k == root ]] && sealroot[$seal]=$v; done <"$stmt"
	for tsr in seals/"$seal".*.tsr; do
		[[ -f $tsr ]] || continue
		name=${tsr%.tsr}
		line=$(openssl ts -reply -in "$tsr" -text 2>/dev/null) || { fail "$tsr: not a timestamp answer"; continue; }
		at=
		while read -r a b c d e f _; do
			[[ $a == Time && $b == stamp: ]] && at=$(epoch "$c" "$d" "$e" "$f")
		done <<<"$line"
		if [[ -z $at ]]; then
			fail "$tsr: no time in the timestamp"
			continue
		fi
		out=$(openssl ts -verify -data "$stmt" -in "$tsr" -CAfile tsa/ca.pem -untrusted "$name.pem" -attime "$at" 2>&1)
		if [[ $out == *"Verification: OK"* ]]; then
			good=$((good + 1))
		else
			fail "$tsr: the timestamp does not prove $stmt"
		fi
	done
	((good >= REQUIRE)) || fail "seal $seal: $good good timestamps, $REQUIRE required"
}

# The hashes are computed in batches, one sha256sum for many inputs, each
# written by a subshell of builtins into a pipe of its own: a process per
# hash made the script take most of a second per message.
declare -A sum
# batch GEN ID...: sum[ID] is the SHA-256 of what "GEN ID" writes.
batch() {
	local gen=$1 cmd id h _ k ids
	shift
	while (($#)); do
		cmd=sha256sum ids=()
		for id in "${@:1:64}"; do
			cmd+=" <($gen $id)"
			ids+=("$id")
		done
		shift ${#ids[@]}
		k=0
		while read -r h _; do
			sum[${ids[k]}]=$h
			k=$((k + 1))
		done < <(eval "$cmd")
	done
}
# files ID...: sum[ID] is the SHA-256 of messages/ID.eml.
files() {
	local h f id
	while (($#)); do
		local names=()
		for id in "${@:1:256}"; do names+=("messages/$id.eml"); done
		shift ${#names[@]}
		while read -r h f; do
			f=${f#messages/}
			sum[${f%.eml}]=$h
		done < <(sha256sum "${names[@]}")
	done
}

declare -A P_prev P_hash P_seal P_root P_steps P_body cur
ids=()
n=0
for proof in proofs/*.proof; do
	[[ -f $proof ]] || continue
	id=${proof#proofs/}
	id=${id%.proof}
	n=$((n + 1))
	rec= prev= hash= seal= root= steps=
	while read -r k a b; do
		case $k in
		record) rec=$a ;; prev) prev=$a ;; hash) hash=$a ;; seal) seal=$a ;; root) root=$a ;;
		path) steps+="$a $b " ;;
		esac
	done <"$proof"
	if [[ $rec != "$id" ]] || ! [[ $id =~ ^[0-9]+$ ]] || ! ishex "$prev" || ! ishex "$hash" || ! ishex "$root" || ! [[ $seal =~ ^[0-9]+$ ]]; then
		fail "$proof: malformed"
		continue
	fi
	eml=messages/$id.eml json=records/$id.json
	if [[ ! -f $eml || ! -f $json ]]; then
		fail "record $id: $eml or $json missing"
		continue
	fi
	body=$(<"$json")
	P_prev[$id]=$prev P_hash[$id]=$hash P_seal[$id]=$seal P_root[$id]=$root P_steps[$id]=$steps P_body[$id]=$body
	ids+=("$id")
done

# 1. The messages against their records and the manifest.
files "${ids[@]}"
for id in "${ids[@]}"; do
	digest=${sum[$id]-} want=
	[[ ${P_body[$id]} =~ \"plaintext_sha256\":\"([0-9a-f]{64})\" ]] && want=${BASH_REMATCH[1]}
	[[ -n $digest && $digest == "$want" ]] || fail "messages/$id.eml: changed (SHA-256 $digest, record $id says $want)"
	[[ -n $digest && ${listed[$id]-} == "$digest" ]] || fail "manifest.csv: record $id does not list the SHA-256 of messages/$id.eml"
done

# 2. Each record's chain hash.
record() {
	printf 'smimed archive record v1\n'
	hexbin "${P_prev[$1]}"
	local idhex
	printf -v idhex '%016x' "$1"
	hexbin "$idhex"
	printf '%s' "${P_body[$1]}"
}
sum=()
batch record "${ids[@]}"
left=()
for id in "${ids[@]}"; do
	if [[ ${sum[$id]-} != "${P_hash[$id]}" ]]; then
		fail "records/$id.json: changed (its chain hash is not the one proofs/$id.proof proves)"
		continue
	fi
	left+=("$id")
done

# 3. The Merkle paths, one level at a time for every proof.
leaf() { printf '\x00'; hexbin "${P_hash[$1]}"; }
sum=()
batch leaf "${left[@]}"
declare -A bad
for id in "${left[@]}"; do cur[$id]=${sum[$id]}; done
# pair LEFTRIGHT: the node of two hashes (128 hex digits).
pair() { printf '\x01'; hexbin "${1:0:64}"; hexbin "${1:64:64}"; }
for ((level = 0; ; level++)); do
	# Proofs of one seal share their upper nodes: each distinct pair of a
	# level is hashed once.
	declare -A pairs=() of=()
	for id in "${left[@]}"; do
		[[ -n ${bad[$id]-} ]] && continue
		s=(${P_steps[$id]})
		((${#s[@]} > level * 2)) || continue
		side=${s[level * 2]} sib=${s[level * 2 + 1]-}
		if [[ $side != [LR] ]] || ! ishex "$sib"; then
			bad[$id]=1
			continue
		fi
		if [[ $side == L ]]; then of[$id]=$sib${cur[$id]}; else of[$id]=${cur[$id]}$sib; fi
		pairs[${of[$id]}]=1
	done
	((${#pairs[@]} > 0)) || break
	sum=()
	batch pair "${!pairs[@]}"
	for id in "${!of[@]}"; do cur[$id]=${sum[${of[$id]}]}; done
done
for id in "${left[@]}"; do
	if [[ -n ${bad[$id]-} || ${cur[$id]} != "${P_root[$id]}" ]]; then
		fail "proofs/$id.proof: the Merkle path does not lead to its root"
		continue
	fi
	# 4. The seal and its timestamps.
	seal=${P_seal[$id]}
	checkseal "$seal"
	[[ ${sealroot[$seal]} == "${P_root[$id]}" ]] || fail "proofs/$id.proof: seals/$seal.txt has another root (the seal or the proof changed)"
done
for rec in "${!listed[@]}"; do
	[[ -f proofs/$rec.proof ]] || fail "manifest.csv lists record $rec, which has no proof"
done

if ((n == 0)); then
	fail "no proofs/*.proof: nothing to verify"
fi
if ((fails > 0)); then
	printf 'FAILED: %d problems\n' "$fails"
	exit 1
fi
printf 'OK: %d messages, %d seals, each proven by a timestamp\n' "$n" "${#sealroot[@]}"
printf 'trust anchor (tsa/ca.pem): compare with the fingerprint your TSA publishes:\n'
openssl x509 -in tsa/ca.pem -noout -subject -fingerprint -sha256
