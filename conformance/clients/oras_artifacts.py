"""Push an OCI artifact with oras-py, then a signature artifact whose
`subject` is the first one, pull the first back, and print what was pushed
as JSON for the Rust suite to check (through the referrers API).

usage: oras_artifacts.py HOST:PORT WORKDIR ADMIN_TOKEN

It logs in with the docker token flow (oras-py's "token" backend).
"""
import hashlib
import json
import os
import sys

import oras.auth.utils
import oras.client
import oras.oci
import requests

host, work, token = sys.argv[1], sys.argv[2], sys.argv[3]
client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="token")
client.login(username="admin", password=token, hostname=host, tls_verify=False)
repo = f"{host}/oras/artifact"

payload = os.path.join(work, "payload.txt")
with open(payload, "w") as f:
    f.write("an artifact pushed by oras-py\n" * 100)

# oras-py widens its token only after a 403: on a 401 with
# error="insufficient_scope" (what distribution and Berth answer a token that
# grants too little) it retries the same token. So, as docker does before a
# push, take a token for the push scope first, through oras-py's own token
# request and the challenge Berth gives an anonymous push.
challenge = requests.post(f"http://{host}/v2/oras/artifact/blobs/uploads/")
assert challenge.status_code == 401, challenge.status_code
h = oras.auth.utils.parse_auth_header(challenge.headers["Www-Authenticate"])
assert h.scope == "repository:oras/artifact:pull,push", h
client.auth.token = client.auth.request_token(h)
assert client.auth.token

res = client.push(target=f"{repo}:v1", files=[payload], disable_path_validation=True)
assert res.status_code in (200, 201), res.text

head = requests.head(
    f"http://{host}/v2/oras/artifact/manifests/v1",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    auth=("admin", token),
)
assert head.status_code == 200, head.status_code
subject_digest = head.headers["Docker-Content-Digest"]
subject_size = int(head.headers["Content-Length"])

# The signature: an OCI 1.1 artifact with the empty config and a subject.
sig_path = os.path.join(work, "signature.json")
with open(sig_path, "w") as f:
    json.dump({"signed": subject_digest}, f)
empty_path = os.path.join(work, "empty.json")
with open(empty_path, "w") as f:
    f.write("{}")


def desc(path, media_type):
    data = open(path, "rb").read()
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


container = client.get_container(f"{repo}:sig")
empty = desc(empty_path, "application/vnd.oci.empty.v1+json")
sig = desc(sig_path, "application/vnd.example.signature+json")
for path, d in ((empty_path, empty), (sig_path, sig)):
    r = client.upload_blob(path, container, d)
    assert r.status_code in (200, 201, 202), r.text
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": "application/vnd.example.signature",
    "config": empty,
    "layers": [sig],
    "subject": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": subject_digest,
        "size": subject_size,
    },
    "annotations": {"org.example.signer": "berth-conformance"},
}
r = client.upload_manifest(manifest, container)
assert r.status_code == 201, r.text
sig_digest = r.headers["Docker-Content-Digest"]
assert r.headers.get("OCI-Subject") == subject_digest, r.headers

# Pull the subject back and compare.
out = os.path.join(work, "pulled")
files = client.pull(target=f"{repo}:v1", outdir=out)
pulled = open(files[0]).read()
assert pulled == open(payload).read(), "pulled artifact differs"

print(json.dumps({"subject": subject_digest, "signature": sig_digest}))
