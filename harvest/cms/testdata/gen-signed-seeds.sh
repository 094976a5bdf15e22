#!/bin/sh
# Regenerates the FuzzParseSignedData seeds in signed-seeds/ with OpenSSL:
# small keys (RSA-1024, P-256) so the seeds stay small. Every run makes new
# keys, so the files change; the fuzz target only needs them to be valid.
#   sh harvest/cms/testdata/gen-signed-seeds.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/signed-seeds"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OPENSSL_CONF=/dev/null

cat > req.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = seed
[ext]
subjectKeyIdentifier = hash
keyUsage = digitalSignature
CNF

mk() { # name, -newkey value, [pkeyopt]
	name=$1 newkey=$2
	shift 2
	opts=""
	for o in "$@"; do opts="$opts -pkeyopt $o"; done
	# shellcheck disable=SC2086
	openssl req -config req.cnf -x509 -new -newkey "$newkey" $opts -nodes \
		-keyout "$name.key" -out "$name.crt" -subj "/CN=$name" -days 3650 2>/dev/null
}
mk rsa rsa:1024
mk ec ec ec_paramgen_curve:P-256

# The detached content of the detached seeds; fuzz_signed_test.go has a copy.
printf 'Content-Type: text/plain\r\n\r\nfuzz seed\r\n' > content.txt

sign() { # output, extra args...
	o=$1
	shift
	openssl cms -sign -binary -outform DER -in content.txt -out "$o.der" "$@"
}
sign rsa-detached -md sha256 -signer rsa.crt -inkey rsa.key
sign rsa-opaque-sha1 -nodetach -md sha1 -signer rsa.crt -inkey rsa.key
sign pss-salt7 -md sha384 -signer rsa.crt -inkey rsa.key -keyopt rsa_padding_mode:pss -keyopt rsa_pss_saltlen:7
sign ecdsa-opaque -nodetach -md sha256 -signer ec.crt -inkey ec.key
sign two-signers -md sha512 -signer rsa.crt -inkey rsa.key -signer ec.crt -inkey ec.key
sign noattr-keyid -noattr -keyid -md sha224 -signer ec.crt -inkey ec.key
sign stream-opaque -stream -nodetach -md sha256 -signer rsa.crt -inkey rsa.key

rm -rf "$out"
mkdir -p "$out"
cp ./*.der "$out/"
ls -l "$out"
