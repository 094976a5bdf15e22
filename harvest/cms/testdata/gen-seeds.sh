#!/bin/sh
# Regenerates the seed inputs of FuzzDecrypt and FuzzToDER
# (harvest/cms/fuzz_envelope_test.go): two throw-away recipient keys with
# self-signed certificates (env-seed-rsa.*: RSA-1024, small so that fuzzing
# is fast; env-seed-ec.*: P-256) and a few small messages made with
# `openssl cms -encrypt`, covering PKCS #1 v1.5, OAEP with a label, ECDH,
# subjectKeyIdentifier recipients, AES-GCM (AuthEnvelopedData), KEK and
# password recipients, and BER indefinite-length (-stream) output.
#
# The keys protect nothing; they exist only for these tests. Run from
# anywhere with OpenSSL 3:  sh harvest/cms/testdata/gen-seeds.sh
set -eu
cd "$(dirname "$0")"

req() { # name, -newkey argument, extra options...
	name=$1 newkey=$2
	shift 2
	openssl req -x509 -newkey "$newkey" "$@" -nodes -keyout "env-seed-$name.key" \
		-out "env-seed-$name.pem" -subj "/CN=smimed fuzz seed $name" -days 36500 2>/dev/null
}
req rsa rsa:1024
req ec ec -pkeyopt ec_paramgen_curve:P-256

printf 'Content-Type: text/plain\r\n\r\nfuzz seed\r\n' >env-seed-msg.txt
enc() { # output name, openssl cms options...
	out=$1
	shift
	openssl cms -encrypt -binary -in env-seed-msg.txt -outform DER -out "env-seed-$out.der" "$@"
}
enc ktri-aes128 -aes-128-cbc -recip env-seed-rsa.pem
enc ktri-des3-keyid -des3 -keyid -recip env-seed-rsa.pem
enc oaep-label-gcm -aes-256-gcm -recip env-seed-rsa.pem -keyopt rsa_padding_mode:oaep \
	-keyopt rsa_oaep_md:sha256 -keyopt rsa_oaep_label:0123456789abcdef
enc kari-sha256-aes192 -aes-192-cbc -recip env-seed-ec.pem -keyopt ecdh_kdf_md:sha256
enc kari-keyid-gcm -aes-128-gcm -keyid -recip env-seed-ec.pem
enc multi-stream -aes-256-cbc -stream -recip env-seed-rsa.pem -recip env-seed-ec.pem
enc kari-des3wrap -des3 -recip env-seed-ec.pem
enc kinds -aes-128-cbc -recip env-seed-ec.pem -secretkey 000102030405060708090a0b0c0d0e0f \
	-secretkeyid 0102 -pwri_password seed
rm env-seed-msg.txt
