#!/usr/bin/env bash
# Installs confcom from the plain manifests (deploy/manifests/confcom.yaml) without Helm.
# Creates what the manifests leave out because it is per-cluster key material: the
# webhook's TLS certificate (a private CA + a serving certificate) and the attestation
# service's token signing key, then applies the manifests and puts the CA into the
# MutatingWebhookConfiguration. Existing Secrets are kept, so re-running is safe.
# Needs: kubectl (pointed at the cluster) and openssl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ns=confcom-system
webhook=confcom-webhook
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

if ! kubectl -n "$ns" get secret "$webhook-tls" >/dev/null 2>&1; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key"
  openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 3650 \
    -subj "/CN=$webhook-ca" -out "$tmp/ca.crt"
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/tls.key"
  openssl req -new -key "$tmp/tls.key" -subj "/CN=$webhook.$ns.svc" -out "$tmp/tls.csr"
  printf 'subjectAltName=DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
    "$webhook" "$ns" "$webhook" "$ns" >"$tmp/ext"
  openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$tmp/ext" -out "$tmp/tls.crt"
  kubectl -n "$ns" create secret generic "$webhook-tls" --type=kubernetes.io/tls \
    --from-file=tls.crt="$tmp/tls.crt" --from-file=tls.key="$tmp/tls.key" \
    --from-file=ca.crt="$tmp/ca.crt"
fi

if ! kubectl -n "$ns" get secret confcom-attestation-signing-key >/dev/null 2>&1; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/key.pem"
  kubectl -n "$ns" create secret generic confcom-attestation-signing-key \
    --from-file=key.pem="$tmp/key.pem"
fi

kubectl apply -f "$here/confcom.yaml"

ca="$(kubectl -n "$ns" get secret "$webhook-tls" -o jsonpath='{.data.ca\.crt}')"
kubectl patch mutatingwebhookconfiguration "$webhook" --type=json \
  -p "[{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca\"}]"
echo "confcom installed in namespace $ns"
