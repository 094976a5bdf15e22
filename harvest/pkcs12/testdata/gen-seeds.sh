#!/bin/sh
# Regenerates the FuzzDecode seeds in testdata/seeds/ with OpenSSL 3: small
# PKCS#12 files (P-256 key, self-signed certificate, password "fuzz",
# iteration count 1 so that fuzzing stays fast), one per encryption and MAC
# scheme the package reads. Run from anywhere; the old seeds are replaced.
set -eu
cd "$(dirname "$0")"
out=seeds
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
rm -rf "$out"
mkdir -p "$out"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" -subj /CN=fuzz -days 3650 2>/dev/null

legacy="-provider legacy -provider default"
export_p12() {
	name=$1
	shift
	# shellcheck disable=SC2068
	openssl pkcs12 -export -in "$tmp/cert.pem" -inkey "$tmp/key.pem" -name fuzz \
		-passout pass:fuzz -noiter -nomaciter -out "$out/$name.p12" $@
}

export_p12 pbes2-aes256-sha256                       # OpenSSL 3 default
export_p12 legacy -legacy                            # RC2-40 certs, 3DES key, SHA-1 MAC
export_p12 rc2-128-2des-sha1 $legacy -certpbe PBE-SHA1-RC2-128 -keypbe PBE-SHA1-2DES -macalg sha1
export_p12 aes128-3des-sha512 -certpbe AES-128-CBC -keypbe DES-EDE3-CBC -macalg sha512
export_p12 aes192-sha384 -certpbe AES-192-CBC -keypbe AES-192-CBC -macalg sha384
export_p12 nomac -nomac
export_p12 plain -nomac -certpbe NONE -keypbe NONE    # plain keyBag and certBag
ls -l "$out"
