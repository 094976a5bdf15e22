#!/usr/bin/env bash
# gen.sh - regenerate testdata/ (pki/, msg/, expected.tsv) with OpenSSL 3.
#
# Run from anywhere: testdata/gen.sh. Everything it writes is removed and
# made again, so running it twice is fine. Keys are new on every run, so
# all fingerprints, signatures and hashes change; expected.tsv is computed
# from the new files by OpenSSL at the end of the run. See README.md.
set -euo pipefail
cd "$(dirname "$0")"
export LC_ALL=C
umask 022

OPENSSL=${OPENSSL:-openssl}
case "$("$OPENSSL" version)" in
"OpenSSL 3."*) ;;
*) echo "gen.sh: needs OpenSSL 3.x, found: $("$OPENSSL" version)" >&2; exit 1 ;;
esac

rm -rf pki msg expected.tsv
mkdir pki msg
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

die() { echo "gen.sh: $*" >&2; exit 1; }
# ossl ARGS...: run openssl, quiet unless it fails.
ossl() { "$OPENSSL" "$@" 2>"$TMP/ossl.err" || { cat "$TMP/ossl.err" >&2; die "openssl $* failed"; }; }
# crlf: stdin to stdout with every line ended by CRLF (mail is CRLF).
crlf() { sed -e 's/\r$//' -e 's/$/\r/'; }
sha256() { "$OPENSSL" dgst -sha256 -r "$1" | cut -d' ' -f1; }

# Date header of every message: the time of generation, so that it agrees
# with the signingTime attributes OpenSSL puts into the signatures.
DATE=$(date -u '+%a, %d %b %Y %H:%M:%S +0000')

##############################################################################
# PKI
##############################################################################

# Minimal CA configuration for "openssl ca", which (unlike "x509 -req" in
# OpenSSL 3.0) takes explicit -startdate/-enddate.
export CADIR="$TMP/ca" LEAF_KU=digitalSignature LEAF_EKU=emailProtection LEAF_EMAIL=none@invalid
mkdir -p "$CADIR/new"
: >"$CADIR/index.txt"
cat >"$TMP/ca.cnf" <<'EOF'
[ ca ]
default_ca = testca

[ testca ]
dir            = $ENV::CADIR
database       = $dir/index.txt
new_certs_dir  = $dir/new
serial         = $dir/serial
default_md     = sha256
policy         = anydn
unique_subject = no
email_in_dn    = no
preserve       = yes

[ anydn ]
organizationName = supplied
commonName       = supplied

[ v3_root ]
basicConstraints     = critical, CA:TRUE
keyUsage             = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_inter ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ v3_leaf ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, $ENV::LEAF_KU
extendedKeyUsage       = $ENV::LEAF_EKU
subjectAltName         = email:$ENV::LEAF_EMAIL
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
EOF

# Key generators, spread over the three PEM key formats.
key_rsa_pkcs1() { ossl genrsa -traditional -out "pki/$1.key" 2048; }
key_rsa_pkcs8() { ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "pki/$1.key"; }
key_ec_sec1() { ossl ecparam -name "$2" -genkey -noout -out "pki/$1.key"; }
key_ec_pkcs8() { ossl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$2" -pkeyopt ec_param_enc:named_curve -out "pki/$1.key"; }

# issue KEYFILE CRTFILE SUBJECT SERIAL ISSUER(self|pki name of a CA) EXTSECTION START END
issue() {
	local key=$1 crt=$2 subj=$3 serial=$4 issuer=$5 ext=$6 start=$7 end=$8 signer
	ossl req -new -key "$key" -subj "$subj" -out "$TMP/req.csr"
	echo "$serial" >"$CADIR/serial"
	if [ "$issuer" = self ]; then
		signer=(-selfsign -keyfile "$key")
	else
		signer=(-cert "$TMP/$issuer.crt" -keyfile "pki/$issuer.key")
	fi
	ossl ca -config "$TMP/ca.cnf" -batch -notext -in "$TMP/req.csr" -out "$crt" \
		"${signer[@]}" -extensions "$ext" -startdate "$start" -enddate "$end"
}

LEAF_START=20260101000000Z
LEAF_END=20451231000000Z
# leaf NAME EMAIL ORG SERIAL ISSUER [KU [EKU [START END]]]  (key must exist)
leaf() {
	local name=$1 email=$2 org=$3 serial=$4 issuer=$5
	local ku=${6:-digitalSignature,keyEncipherment} eku=${7:-emailProtection}
	local start=${8:-$LEAF_START} end=${9:-$LEAF_END}
	LEAF_KU=$ku LEAF_EKU=$eku LEAF_EMAIL=$email \
		issue "pki/$name.key" "pki/$name.crt" "/O=$org/CN=$name" "$serial" "$issuer" v3_leaf "$start" "$end"
}
ECKU=digitalSignature,keyAgreement

# Root and intermediate CA.
key_rsa_pkcs8 root
issue pki/root.key "$TMP/root.crt" "/O=Smimed Test/CN=Smimed Test Root CA" 1000 self v3_root 20260101000000Z 20460101000000Z
key_rsa_pkcs1 intermediate
issue pki/intermediate.key "$TMP/intermediate.crt" "/O=Smimed Test/CN=Smimed Test Intermediate CA" 1001 root v3_inter 20260101000000Z 20460101000000Z
cp "$TMP/root.crt" pki/ca-bundle.pem
cp "$TMP/intermediate.crt" pki/intermediate.pem

# The organisation (issued by the root). org-old has the older serial.
key_rsa_pkcs1 org-old
leaf org-old ceo@org.example "Org Example" 2001 root
key_rsa_pkcs8 org-new
leaf org-new ceo@org.example "Org Example" 2002 root
key_ec_sec1 org-ec256 prime256v1
leaf org-ec256 ops@org.example "Org Example" 2003 root "$ECKU"
key_ec_pkcs8 org-ec384 secp384r1
leaf org-ec384 ops384@org.example "Org Example" 2004 root "$ECKU"

# Partners (issued by the intermediate).
key_rsa_pkcs1 alice
leaf alice alice@partner.example "Partner Example" 3001 intermediate
key_ec_sec1 alice-ec256 prime256v1
leaf alice-ec256 alice-ec256@partner.example "Partner Example" 3002 intermediate "$ECKU"
key_ec_pkcs8 alice-ec384 secp384r1
leaf alice-ec384 alice-ec384@partner.example "Partner Example" 3003 intermediate "$ECKU"
key_ec_sec1 alice-ec521 secp521r1
leaf alice-ec521 alice-ec521@partner.example "Partner Example" 3004 intermediate "$ECKU"
key_rsa_pkcs8 expired
leaf expired expired@partner.example "Partner Example" 3005 intermediate "" "" 20200101000000Z 20210101000000Z
key_rsa_pkcs1 bob
leaf bob bob@elsewhere.example "Elsewhere Example" 3006 intermediate
key_rsa_pkcs8 noeku
leaf noeku noeku@partner.example "Partner Example" 3007 intermediate "" serverAuth
key_rsa_pkcs1 nokuds
leaf nokuds nokuds@partner.example "Partner Example" 3008 intermediate keyEncipherment
key_rsa_pkcs8 stranger
leaf stranger stranger@partner.example "Partner Example" 3009 intermediate
key_rsa_pkcs1 selfsigned
leaf selfsigned selfsigned@partner.example "Partner Example" 4001 self

# PKCS#12 exports of the organisation keys.
printf 'test-password\n' >pki/org-new.pass
printf 'test-password\n' >pki/org-old-legacy.pass
ossl pkcs12 -export -name org-new -inkey pki/org-new.key -in pki/org-new.crt \
	-certfile pki/ca-bundle.pem -passout file:pki/org-new.pass -out pki/org-new.p12
ossl pkcs12 -export -name org-old -inkey pki/org-old.key -in pki/org-old.crt \
	-certfile pki/ca-bundle.pem -passout file:pki/org-old-legacy.pass \
	-provider legacy -provider default \
	-certpbe PBE-SHA1-RC2-40 -keypbe PBE-SHA1-3DES -macalg sha1 -out pki/org-old-legacy.p12
chmod 600 pki/*.key pki/*.pass pki/*.p12

# PKI sanity: every leaf is valid now except "expired", and OpenSSL judges
# each as intended for S/MIME signing.
LEAVES="org-old org-new org-ec256 org-ec384 alice alice-ec256 alice-ec384 alice-ec521 expired bob noeku nokuds stranger selfsigned"
for n in $LEAVES; do
	if "$OPENSSL" x509 -in "pki/$n.crt" -noout -checkend 0 >/dev/null; then valid=yes; else valid=no; fi
	case $n in expired) want=no ;; *) want=yes ;; esac
	[ "$valid" = "$want" ] || die "pki/$n.crt: valid now = $valid, want $want"
	got=$("$OPENSSL" verify -CAfile pki/ca-bundle.pem -untrusted pki/intermediate.pem -purpose smimesign "pki/$n.crt" 2>&1 |
		sed -n 's/^error [0-9]* at [0-9]* depth lookup: //p' | head -n1 || true)
	got=${got:-ok}
	case $n in
	expired) want="certificate has expired" ;;
	noeku | nokuds) want="unsuitable certificate purpose" ;;
	selfsigned) want="self-signed certificate" ;;
	*) want=ok ;;
	esac
	[ "$got" = "$want" ] || die "pki/$n.crt: openssl verify says '$got', want '$want'"
done
for p in org-new org-old-legacy; do
	"$OPENSSL" pkcs12 -in "pki/$p.p12" -passin "file:pki/$p.pass" -provider legacy -provider default \
		-nodes -noout >/dev/null 2>&1 || die "pki/$p.p12 does not open"
done

##############################################################################
# Messages
##############################################################################

# body NAME TEXT: the inner MIME entity of message NAME -> $TMP/NAME.body
body() {
	printf 'Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\nThis is the smimed test message "%s".\r\n%s\r\nAmount: 100 EUR\r\n' \
		"$1" "$2" >"$TMP/$1.body"
}
# hdr FROM TO NAME: sets H to the openssl -from/-to/-subject arguments.
hdr() { H=(-from "$1" -to "$2" -subject "smimed test: $3"); }
# cms OP IN OUT ARGS...: openssl cms OP with S/MIME output, CRLF line ends.
cms() {
	local op=$1 in=$2 out=$3
	shift 3
	ossl cms "$op" -crlfeol -in "$in" -out "$TMP/cms.out" "$@"
	crlf <"$TMP/cms.out" >"$out"
}
smime() {
	local op=$1 in=$2 out=$3
	shift 3
	ossl smime "$op" -crlfeol -in "$in" -out "$TMP/cms.out" "$@"
	crlf <"$TMP/cms.out" >"$out"
}
# finish NAME FILE: prepend Date and Message-ID to FILE -> msg/NAME.eml
finish() {
	{
		printf 'Date: %s\r\nMessage-ID: <%s@test.smimed.example>\r\n' "$DATE" "$1"
		crlf <"$2"
	} >"msg/$1.eml"
}
# handmade NAME FROM TO CONTENT-TYPE-PARAMS FILENAME DERFILE: an attachment-style
# S/MIME message built by hand around base64 DER.
handmade() {
	{
		printf 'Date: %s\r\nMessage-ID: <%s@test.smimed.example>\r\n' "$DATE" "$1"
		printf 'From: %s\r\nTo: %s\r\nSubject: smimed test: %s\r\nMIME-Version: 1.0\r\n' "$2" "$3" "$1"
		printf 'Content-Type: %s\r\nContent-Transfer-Encoding: base64\r\n' "$4"
		printf 'Content-Disposition: attachment; filename=%s\r\n\r\n' "$5"
		"$OPENSSL" base64 -in "$6" | crlf
	} >"msg/$1.eml"
}

ALICE=(-signer pki/alice.crt -inkey pki/alice.key -certfile pki/intermediate.pem)
ALICE_NOCHAIN=(-signer pki/alice.crt -inkey pki/alice.key)
# signer NAME: sets S to sign with pki/NAME (chain included)
signer() { S=(-signer "pki/$1.crt" -inkey "pki/$1.key" -certfile pki/intermediate.pem); }
A=alice@partner.example
CEO=ceo@org.example

# 1. Signed.
# simple_signed NAME FROM SIGNER-ARGS...: detached multipart/signed of a text body
simple_signed() {
	local name=$1 from=$2
	shift 2
	hdr "$from" "$CEO" "$name"
	cms -sign "$TMP/$name.body" "$TMP/$name.out" "${H[@]}" "$@"
	finish "$name" "$TMP/$name.out"
}
body signed-rsa-sha256 "Detached signature by alice (RSA 2048, SHA-256), chain included."
simple_signed signed-rsa-sha256 "$A" "${ALICE[@]}" -md sha256
for md in sha1 sha224 sha384 sha512; do
	body "signed-rsa-$md" "Detached signature by alice (RSA 2048, ${md^^})."
	simple_signed "signed-rsa-$md" "$A" "${ALICE[@]}" -md "$md"
done
body signed-rsa-pss "Detached signature by alice, RSASSA-PSS with SHA-256."
simple_signed signed-rsa-pss "$A" "${ALICE[@]}" -keyopt rsa_padding_mode:pss
for c in ec256:sha256 ec384:sha384 ec521:sha512; do
	n=${c%%:*} md=${c#*:}
	body "signed-$n" "Detached ECDSA signature by alice-$n with ${md^^}."
	signer "alice-$n"
	simple_signed "signed-$n" "alice-$n@partner.example" "${S[@]}" -md "$md"
done

body signed-opaque "Opaque (application/pkcs7-mime; smime-type=signed-data) signature by alice."
hdr "$A" "$CEO" signed-opaque
cms -sign "$TMP/signed-opaque.body" "$TMP/x" "${H[@]}" "${ALICE[@]}" -nodetach
finish signed-opaque "$TMP/x"

body signed-nocerts "Detached signature by alice without any certificate in the CMS (-nocerts)."
simple_signed signed-nocerts "$A" "${ALICE_NOCHAIN[@]}" -nocerts

body signed-two-signers "Detached signature by two signers: alice (RSA) and alice-ec256 (P-256)."
simple_signed signed-two-signers "$A" "${ALICE[@]}" -signer pki/alice-ec256.crt -inkey pki/alice-ec256.key

body signed-keyid "Detached signature by alice, signer identified by subjectKeyIdentifier (-keyid)."
simple_signed signed-keyid "$A" "${ALICE[@]}" -keyid

body signed-expired "Detached signature by expired@partner.example, whose certificate expired 2021-01-01."
signer expired
simple_signed signed-expired expired@partner.example "${S[@]}"

body signed-selfsigned "Detached signature by a self-signed certificate, not chained to the test root."
simple_signed signed-selfsigned selfsigned@partner.example -signer pki/selfsigned.crt -inkey pki/selfsigned.key

body signed-mismatch "Signed by bob@elsewhere.example but From says carol@partner.example."
signer bob
simple_signed signed-mismatch carol@partner.example "${S[@]}"

body signed-noeku "Signed by a certificate whose extended key usage is serverAuth only."
signer noeku
simple_signed signed-noeku noeku@partner.example "${S[@]}"

body signed-nokuds "Signed by a certificate whose key usage is keyEncipherment only."
signer nokuds
simple_signed signed-nokuds nokuds@partner.example "${S[@]}"

body signed-tampered "Signed by alice; afterwards the amount below was changed from 100 to 900."
simple_signed signed-tampered "$A" "${ALICE[@]}"
[ "$(grep -c $'^Amount: 100 EUR\r$' msg/signed-tampered.eml)" = 1 ] || die "signed-tampered: marker not unique"
sed -i 's/^Amount: 100 EUR\r$/Amount: 900 EUR\r/' msg/signed-tampered.eml

body signed-x-pkcs7 "Detached signature by alice made by 'openssl smime' (application/x-pkcs7-signature)."
hdr "$A" "$CEO" signed-x-pkcs7
smime -sign "$TMP/signed-x-pkcs7.body" "$TMP/x" "${H[@]}" "${ALICE[@]}"
finish signed-x-pkcs7 "$TMP/x"

body signed-no-sigpart "A multipart/signed whose second (signature) part has been removed."
simple_signed signed-no-sigpart "$A" "${ALICE[@]}"
b=$(sed -n 's/^Content-Type: multipart\/signed;.*boundary="\([^"]*\)".*/\1/p' msg/signed-no-sigpart.eml | head -n1)
[ -n "$b" ] || die "signed-no-sigpart: no boundary"
awk -v b="--$b" '{ l = $0; sub(/\r$/, "", l) } l == b { if (++n == 2) { print b "--\r"; exit } } { print }' \
	msg/signed-no-sigpart.eml >"$TMP/x"
mv "$TMP/x" msg/signed-no-sigpart.eml
grep -q 'pkcs7-signature; name' msg/signed-no-sigpart.eml && die "signed-no-sigpart: signature part still there"
# signed-with-encpref: not produced. OpenSSL's command line cannot add an
# SMIMEEncryptionKeyPreference signed attribute (see README.md).

# 2. Encrypted (all to organisation keys unless noted).
# simple_enc NAME TO ARGS...: openssl cms -encrypt of a text body
simple_enc() {
	local name=$1 to=$2
	shift 2
	hdr "$A" "$to" "$name"
	cms -encrypt "$TMP/$name.body" "$TMP/$name.out" "${H[@]}" "$@"
	finish "$name" "$TMP/$name.out"
}
for c in aes128 aes192 aes256 des3; do
	body "enc-$c" "Enveloped to org-new with ${c^^}-CBC, RSA PKCS#1 v1.5 key transport."
	simple_enc "enc-$c" "$CEO" "-$c" pki/org-new.crt
done
body enc-oaep-sha1 "Enveloped to org-new, RSAES-OAEP key transport with SHA-1."
simple_enc enc-oaep-sha1 "$CEO" -aes256 -recip pki/org-new.crt -keyopt rsa_padding_mode:oaep
body enc-oaep-sha256 "Enveloped to org-new, RSAES-OAEP key transport with SHA-256."
simple_enc enc-oaep-sha256 "$CEO" -aes256 -recip pki/org-new.crt -keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256
body enc-ec256 "Enveloped to org-ec256, ECDH (P-256) key agreement, default KDF (SHA-1)."
simple_enc enc-ec256 ops@org.example -aes256 pki/org-ec256.crt
body enc-ec256-sha256 "Enveloped to org-ec256, ECDH (P-256) key agreement, KDF SHA-256."
simple_enc enc-ec256-sha256 ops@org.example -aes256 -recip pki/org-ec256.crt -keyopt ecdh_kdf_md:sha256
body enc-ec256-sha512 "Enveloped to org-ec256, ECDH (P-256) key agreement, KDF SHA-512."
simple_enc enc-ec256-sha512 ops@org.example -aes256 -recip pki/org-ec256.crt -keyopt ecdh_kdf_md:sha512
body enc-ec384 "Enveloped to org-ec384, ECDH (P-384) key agreement, KDF SHA-384."
simple_enc enc-ec384 ops384@org.example -aes256 -recip pki/org-ec384.crt -keyopt ecdh_kdf_md:sha384
body enc-keyid "Enveloped to org-new, recipient identified by subjectKeyIdentifier (-keyid)."
simple_enc enc-keyid "$CEO" -aes256 -keyid pki/org-new.crt
body enc-gcm128 "AuthEnvelopedData to org-new with AES-128-GCM."
simple_enc enc-gcm128 "$CEO" -aes-128-gcm pki/org-new.crt
body enc-gcm256 "AuthEnvelopedData to org-new with AES-256-GCM."
simple_enc enc-gcm256 "$CEO" -aes-256-gcm pki/org-new.crt
body enc-old-key "Enveloped to org-old only (the rotated-away key)."
simple_enc enc-old-key "$CEO" -aes256 pki/org-old.crt
body enc-multi "Enveloped to stranger (RSA), org-ec256 (ECDH) and org-new (RSA)."
simple_enc enc-multi "$CEO, ops@org.example, stranger@partner.example" -aes256 pki/stranger.crt pki/org-ec256.crt pki/org-new.crt
body enc-nokey "Enveloped to stranger only; the organisation has no key for it."
simple_enc enc-nokey "$CEO" -aes256 pki/stranger.crt
body enc-stream "Enveloped to org-new with -stream (indefinite-length BER)."
simple_enc enc-stream "$CEO" -aes256 -stream pki/org-new.crt

body enc-octet-stream "Enveloped to org-new, sent as application/octet-stream; name=smime.p7m (RFC 8551 3.2.2)."
ossl cms -encrypt -aes256 -in "$TMP/enc-octet-stream.body" -outform DER -out "$TMP/x.der" pki/org-new.crt
handmade enc-octet-stream "$A" "$CEO" "application/octet-stream; name=smime.p7m" smime.p7m "$TMP/x.der"

body enc-x-pkcs7 "Enveloped to org-new by 'openssl smime' (application/x-pkcs7-mime)."
hdr "$A" "$CEO" enc-x-pkcs7
smime -encrypt "$TMP/enc-x-pkcs7.body" "$TMP/x" "${H[@]}" -aes256 pki/org-new.crt
finish enc-x-pkcs7 "$TMP/x"

body enc-no-smime-type "Enveloped to org-new; the smime-type parameter was removed from Content-Type."
simple_enc enc-no-smime-type "$CEO" -aes256 pki/org-new.crt
sed -i 's/^\(Content-Type: application\/pkcs7-mime\); smime-type=enveloped-data/\1/' msg/enc-no-smime-type.eml
grep -q 'smime-type=' msg/enc-no-smime-type.eml && die "enc-no-smime-type: smime-type still there"

# 3. Nesting.
body sign-then-encrypt "Signed by alice (detached), then enveloped to org-new."
cms -sign "$TMP/sign-then-encrypt.body" "$TMP/x1" "${ALICE[@]}"
hdr "$A" "$CEO" sign-then-encrypt
cms -encrypt "$TMP/x1" "$TMP/x" "${H[@]}" -aes256 pki/org-new.crt
finish sign-then-encrypt "$TMP/x"

body encrypt-then-sign "Enveloped to org-new, then signed by alice (detached)."
cms -encrypt "$TMP/encrypt-then-sign.body" "$TMP/x1" -aes256 pki/org-new.crt
hdr "$A" "$CEO" encrypt-then-sign
cms -sign "$TMP/x1" "$TMP/x" "${H[@]}" "${ALICE[@]}"
finish encrypt-then-sign "$TMP/x"

body triple-wrap "Signed by alice (opaque), enveloped to org-new, signed by alice again (detached)."
cms -sign "$TMP/triple-wrap.body" "$TMP/x1" "${ALICE[@]}" -nodetach
cms -encrypt "$TMP/x1" "$TMP/x2" -aes256 pki/org-new.crt
hdr "$A" "$CEO" triple-wrap
cms -sign "$TMP/x2" "$TMP/x" "${H[@]}" "${ALICE[@]}"
finish triple-wrap "$TMP/x"

# too-deep: 10 nested opaque signatures by alice. To keep the file small the
# nine inner layers carry no certificates and no SMIMECapabilities; the
# outermost layer carries alice's certificate and the intermediate.
body too-deep "Ten nested opaque signatures by alice (deeper than the engine's limit of 8)."
cp "$TMP/too-deep.body" "$TMP/d0"
for i in 1 2 3 4 5 6 7 8 9; do
	cms -sign "$TMP/d$((i - 1))" "$TMP/d$i" "${ALICE_NOCHAIN[@]}" -nodetach -nocerts -nosmimecap
done
hdr "$A" "$CEO" too-deep
cms -sign "$TMP/d9" "$TMP/x" "${H[@]}" "${ALICE[@]}" -nodetach -nosmimecap
finish too-deep "$TMP/x"

# 4. Others.
"$OPENSSL" x509 -in pki/alice.crt >"$TMP/chain.pem"
cat pki/intermediate.pem >>"$TMP/chain.pem"
ossl crl2pkcs7 -nocrl -certfile "$TMP/chain.pem" -outform DER -out "$TMP/x.der"
handmade certs-only "$A" "$CEO" "application/pkcs7-mime; smime-type=certs-only; name=smime.p7c" smime.p7c "$TMP/x.der"

{
	printf 'Date: %s\r\nMessage-ID: <plain@test.smimed.example>\r\n' "$DATE"
	printf 'From: %s\r\nTo: %s\r\nSubject: smimed test: plain\r\nMIME-Version: 1.0\r\n' "$A" "$CEO"
	printf 'Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
	printf 'This is the smimed test message "plain": no S/MIME at all.\r\n'
} >msg/plain.eml

##############################################################################
# Expected outcomes, computed by OpenSSL
##############################################################################

ORGKEYS="org-new org-old org-ec256 org-ec384"

# cms_input IN: prepares $TMP/in for openssl; sets FORM. A message whose
# Content-Type is application/octet-stream is decoded from base64 to DER.
cms_input() {
	if grep -qi '^Content-Type: application/octet-stream' "$1"; then
		sed '1,/^\r\{0,1\}$/d' "$1" | tr -d '\r' | "$OPENSSL" base64 -d >"$TMP/in"
		FORM=DER
	else
		cp "$1" "$TMP/in"
		FORM=SMIME
	fi
}
# err_text FILE: the OpenSSL reason of the first error in FILE
err_text() {
	if grep -q 'Verify error:' "$1"; then
		sed -n 's/.*Verify error: *//p' "$1" | head -n1
	else
		awk -F: '/:error:/ { print $6; exit }' "$1"
	fi
}
join() {
	local IFS=$1
	shift
	echo "$*"
}

# analyze FILE LAYERS FROM WANT NOTE [STORE-CERT]
#   LAYERS: outermost first, joined by '>' (as constructed above).
#   WANT:   the verdicts this message is meant to get; the script stops if
#           the verdicts derived from OpenSSL differ. WANT=error records
#           "error" (the engine must refuse the message) instead.
#   STORE-CERT: a signer certificate the engine has in its store (given to
#           openssl with -certfile).
analyze() {
	local file=$1 layers=$2 from=$3 want=$4 note=$5 store=${6:-}
	local cur="msg/$file" dec=- pt=- layer c ch v k i=0 n
	local crypto=() chain=() emails=() fps=() verdicts=() ok certopt=() chainstore=pki/intermediate.pem
	if [ -n "$store" ]; then
		certopt=(-certfile "$store")
		cat pki/intermediate.pem "$store" >"$TMP/chainstore.pem"
		chainstore=$TMP/chainstore.pem
	fi
	IFS='>' read -ra L <<<"$layers"
	for layer in "${L[@]}"; do
		i=$((i + 1))
		case $layer in
		signed-detached | signed-opaque)
			cms_input "$cur"
			if "$OPENSSL" cms -verify -noverify -inform "$FORM" -in "$TMP/in" "${certopt[@]}" -out /dev/null >/dev/null 2>&1; then c=ok; else c=fail; fi
			rm -f "$TMP/signers.pem"
			if ! "$OPENSSL" cms -verify -noverify -nosigs -inform "$FORM" -in "$TMP/in" "${certopt[@]}" \
				-signer "$TMP/signers.pem" -out "$TMP/layer$i" >/dev/null 2>"$TMP/chain.err"; then
				crypto+=("$c")
				chain+=("$(err_text "$TMP/chain.err")")
				emails+=(-)
				fps+=(-)
				verdicts+=(error)
				break
			fi
			rm -f "$TMP"/signer.*.pem
			awk -v d="$TMP" '/BEGIN CERTIFICATE/ { n++ } n { print > (d "/signer." n ".pem") }' "$TMP/signers.pem"
			if [ -z "$store" ]; then
				# The chain as "openssl cms -verify" sees it.
				if "$OPENSSL" cms -verify -nosigs -purpose smimesign -CAfile pki/ca-bundle.pem -certfile pki/intermediate.pem \
					-inform "$FORM" -in "$TMP/in" -out /dev/null >/dev/null 2>"$TMP/chain.err"; then
					ch=ok
				else
					ch=$(err_text "$TMP/chain.err")
				fi
			else
				# The message lacks the certificates: "openssl cms" cannot take
				# untrusted intermediates from outside the message, so check each
				# signer certificate with "openssl verify" against the store.
				ch=ok
				for k in "$TMP"/signer.*.pem; do
					if ! "$OPENSSL" verify -purpose smimesign -CAfile pki/ca-bundle.pem -untrusted "$chainstore" \
						"$k" >/dev/null 2>"$TMP/chain.err"; then
						ch=$(sed -n 's/^error [0-9]* at [0-9]* depth lookup: //p' "$TMP/chain.err" | head -n1)
						break
					fi
				done
			fi
			crypto+=("$c")
			chain+=("$ch")
			for k in "$TMP"/signer.*.pem; do
				local e
				e=$("$OPENSSL" x509 -in "$k" -noout -email | paste -sd ';' -)
				emails+=("${e:--}")
				fps+=("$("$OPENSSL" x509 -in "$k" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')")
				if [ "$c" != ok ]; then
					v=invalid
				elif [ "$ch" != ok ]; then
					case $ch in *expired*) v=expired ;; *) v=untrusted ;; esac
				elif ! "$OPENSSL" x509 -in "$k" -noout -email | grep -qixF -- "$from"; then
					v=mismatch
				else
					v=valid
				fi
				verdicts+=("$v")
			done
			cur=$TMP/layer$i
			;;
		enveloped | auth-enveloped)
			cms_input "$cur"
			ok=()
			for k in $ORGKEYS; do
				if "$OPENSSL" cms -decrypt -inform "$FORM" -in "$TMP/in" -recip "pki/$k.crt" -inkey "pki/$k.key" \
					-out "$TMP/layer$i.$k" >/dev/null 2>&1; then
					ok+=("$k")
				fi
			done
			if [ ${#ok[@]} = 0 ]; then
				dec=fail
				break
			fi
			for k in "${ok[@]}"; do
				cmp -s "$TMP/layer$i.$k" "$TMP/layer$i.${ok[0]}" || die "$file: keys decrypt to different content"
			done
			dec=ok:$(join + "${ok[@]}")
			cur=$TMP/layer$i.${ok[0]}
			pt=$(sha256 "$cur")
			;;
		certs-only | plain) ;;
		*) die "$file: unknown layer $layer" ;;
		esac
	done
	n=$(join , "${verdicts[@]}")
	if [ "$want" = error ]; then
		n=error
	elif [ "${n:--}" != "$want" ]; then
		die "$file: verdicts derived from OpenSSL are '${n:--}', meant to be '$want'"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$layers" "$dec" \
		"$(join , "${crypto[@]}" | sed 's/^$/-/')" "$(join , "${chain[@]}" | sed 's/^$/-/')" "$from" \
		"$(join , "${emails[@]}" | sed 's/^$/-/')" "${n:--}" "$(join , "${fps[@]}" | sed 's/^$/-/')" "$pt" "$note" >>expected.tsv
}

printf 'file\tlayers\topenssl_decrypt\topenssl_sig_crypto\topenssl_chain\tfrom\tsigner_emails\texpected_verdict\tsigner_fp\tplaintext_sha256\tnote\n' >expected.tsv
SD=signed-detached
analyze signed-rsa-sha256.eml $SD "$A" valid "RSA PKCS#1 v1.5, SHA-256; intermediate included"
analyze signed-rsa-sha1.eml $SD "$A" valid "SHA-1 digest: the engine may flag it weak, or judge it invalid with RejectSHA1"
analyze signed-rsa-sha224.eml $SD "$A" valid "SHA-224"
analyze signed-rsa-sha384.eml $SD "$A" valid "SHA-384"
analyze signed-rsa-sha512.eml $SD "$A" valid "SHA-512"
analyze signed-rsa-pss.eml $SD "$A" valid "RSASSA-PSS, SHA-256"
analyze signed-ec256.eml $SD alice-ec256@partner.example valid "ECDSA P-256, SHA-256"
analyze signed-ec384.eml $SD alice-ec384@partner.example valid "ECDSA P-384, SHA-384"
analyze signed-ec521.eml $SD alice-ec521@partner.example valid "ECDSA P-521, SHA-512"
analyze signed-opaque.eml signed-opaque "$A" valid "opaque signed-data"
analyze signed-nocerts.eml $SD "$A" valid "no certificates in the CMS; signer cert pki/alice.crt must come from the store" pki/alice.crt
analyze signed-two-signers.eml $SD "$A" mismatch,valid "signed by alice (RSA) and alice-ec256 (P-256); per-signer columns in SignerInfo order as encoded (DER sorts the SET); From matches only alice's certificate, so alice-ec256 is a mismatch"
analyze signed-keyid.eml $SD "$A" valid "signer identified by subjectKeyIdentifier"
analyze signed-expired.eml $SD expired@partner.example expired "certificate valid 2020-01-01..2021-01-01"
analyze signed-selfsigned.eml $SD selfsigned@partner.example untrusted "self-signed, not chained to the test root"
analyze signed-mismatch.eml $SD carol@partner.example mismatch "signer bob@elsewhere.example, From carol@partner.example"
analyze signed-noeku.eml $SD noeku@partner.example untrusted "EKU serverAuth only: openssl says unsuitable certificate purpose; the engine may name this differently"
analyze signed-nokuds.eml $SD nokuds@partner.example untrusted "KeyUsage keyEncipherment only: openssl says unsuitable certificate purpose; the engine may name this differently"
analyze signed-tampered.eml $SD "$A" invalid "one byte of the signed body changed after signing (100 -> 900)"
analyze signed-x-pkcs7.eml $SD "$A" valid "application/x-pkcs7-signature (openssl smime)"
analyze signed-no-sigpart.eml $SD "$A" error "malformed: multipart/signed without its signature part; openssl cannot read it"
analyze enc-aes128.eml enveloped "$A" - "AES-128-CBC, RSA PKCS#1 v1.5 key transport"
analyze enc-aes192.eml enveloped "$A" - "AES-192-CBC, RSA PKCS#1 v1.5 key transport"
analyze enc-aes256.eml enveloped "$A" - "AES-256-CBC, RSA PKCS#1 v1.5 key transport"
analyze enc-des3.eml enveloped "$A" - "3DES-CBC, RSA PKCS#1 v1.5 key transport"
analyze enc-oaep-sha1.eml enveloped "$A" - "AES-256-CBC, RSAES-OAEP SHA-1"
analyze enc-oaep-sha256.eml enveloped "$A" - "AES-256-CBC, RSAES-OAEP SHA-256"
analyze enc-ec256.eml enveloped "$A" - "AES-256-CBC, ECDH P-256, KDF SHA-1 (default)"
analyze enc-ec256-sha256.eml enveloped "$A" - "AES-256-CBC, ECDH P-256, KDF SHA-256"
analyze enc-ec256-sha512.eml enveloped "$A" - "AES-256-CBC, ECDH P-256, KDF SHA-512"
analyze enc-ec384.eml enveloped "$A" - "AES-256-CBC, ECDH P-384, KDF SHA-384"
analyze enc-keyid.eml enveloped "$A" - "recipient identified by subjectKeyIdentifier"
analyze enc-gcm128.eml auth-enveloped "$A" - "AuthEnvelopedData, AES-128-GCM"
analyze enc-gcm256.eml auth-enveloped "$A" - "AuthEnvelopedData, AES-256-GCM"
analyze enc-old-key.eml enveloped "$A" - "only the rotated-away key org-old can decrypt"
analyze enc-multi.eml enveloped "$A" - "recipients stranger, org-ec256, org-new (in that order)"
analyze enc-nokey.eml enveloped "$A" error "only recipient is stranger; no organisation key decrypts it"
analyze enc-stream.eml enveloped "$A" - "indefinite-length BER (-stream)"
analyze enc-octet-stream.eml enveloped "$A" - "application/octet-stream; name=smime.p7m attachment"
analyze enc-x-pkcs7.eml enveloped "$A" - "application/x-pkcs7-mime (openssl smime)"
analyze enc-no-smime-type.eml enveloped "$A" - "application/pkcs7-mime without smime-type"
analyze sign-then-encrypt.eml enveloped\>$SD "$A" valid "alice signed, then enveloped to org-new"
analyze encrypt-then-sign.eml $SD\>enveloped "$A" valid "enveloped to org-new, then signed by alice"
analyze triple-wrap.eml $SD\>enveloped\>signed-opaque "$A" valid,valid "sign, encrypt, sign (both signatures by alice)"
analyze too-deep.eml "$(printf 'signed-opaque>%.0s' 1 2 3 4 5 6 7 8 9)signed-opaque" "$A" error \
	"10 nested opaque signatures, deeper than the engine's limit of 8; the nine inner layers carry no certificates (signer cert pki/alice.crt from the store)" pki/alice.crt
analyze certs-only.eml certs-only "$A" - "certs-only: alice's certificate and the intermediate, no signature"
analyze plain.eml plain "$A" - "no S/MIME"

# Every message has a line.
[ "$(ls msg | wc -l)" = "$(($(wc -l <expected.tsv) - 1))" ] || die "expected.tsv does not cover msg/"
echo "gen.sh: wrote $(ls pki | wc -l) files in pki/, $(ls msg | wc -l) in msg/, expected.tsv"
